"""Operating a gateway: metrics, logs, cardgate top, several worker processes."""
