import pytest

from watergrid.geo.demo_geometry import DemoAreas, build_demo_areas
from watergrid.geo.locator import Locator


@pytest.fixture(scope="session")
def demo_areas() -> DemoAreas:
    return build_demo_areas()


@pytest.fixture(scope="session")
def locator(demo_areas: DemoAreas) -> Locator:
    return Locator.build(
        [(g.code, g.geometry) for g in demo_areas.grids],
        [(z.code, z.geometry) for z in demo_areas.zones],
    )
