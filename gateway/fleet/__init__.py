"""Fleet fuel cards at the gateway: sales in the core's terms and the operator's fleet
configuration."""
