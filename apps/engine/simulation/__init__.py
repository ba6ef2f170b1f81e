"""Running the engine without an exchange: the market simulator, baseline quoters and the backtest
driver."""
