"""Card readers and encoders (PC/SC, serial magstripe) and their simulators.

Filled in by the issuing and personalization work; nothing here yet.
"""
