"""The chart windows and the terminal quote board (DESIGN §3.1, §3.6): each is its own process,
`python -m dhan_trading.visualizers.NAME`, a thin shell over `analytics/` and `live.py`."""
