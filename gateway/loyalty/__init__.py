"""Loyalty at the gateway: programs checked and packed, what a sale earned in words, coalition
settlement, analytics."""
