"""P&L attribution: spread capture, adverse selection, inventory, fees, funding."""
