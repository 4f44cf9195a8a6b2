"""Shared Qt pieces of the windows and the control center (theme, freshness badge, instrument
picker, the bridge from reader threads to the GUI thread). `catalog` has no Qt import."""
