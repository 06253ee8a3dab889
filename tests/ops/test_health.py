from fastapi.testclient import TestClient


def test_health_ready_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    client.get("/healthz")
    text = client.get("/metrics").text
    assert 'watergrid_http_requests_total{method="GET",route="/healthz",status="200"}' in text
