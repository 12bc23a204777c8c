"""Policy export and live scoring (``nba.serving``)."""
