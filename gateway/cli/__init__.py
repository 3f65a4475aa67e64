"""The cardgate command: its subcommands, the small clients behind them, the demo."""
