"""Dhan Trading System: record and show live NSE F&O and MCX market data from Dhan."""
__version__ = "0.1.0"
