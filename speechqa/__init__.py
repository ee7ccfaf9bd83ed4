"""speechqa: offline speech analytics for call-centre recordings (Mandarin first)."""

__version__ = "0.10.0"
