"""Instruments: the scrip master (`master`), its bundled sample (`sample`), and the feed's universe (`universe`)."""
