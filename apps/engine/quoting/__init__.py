"""From estimates to prices: the pricing closed forms, the γ model, the quoter, GLFT on a grid,
prediction-market pricing."""
