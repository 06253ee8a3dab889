"""Registry import and export (GeoJSON and CSV), shared by the demo loader."""
