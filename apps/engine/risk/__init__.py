"""Risk rules that warn, pull quotes, reduce or halt, and the kill switch."""
