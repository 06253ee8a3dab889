"""watergrid: the operating system of a district water-affairs bureau."""

__version__ = "0.1.0"
