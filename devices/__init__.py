"""Card readers and encoders, and their simulators: ISO 7813 magnetic stripe tracks
(tracks.py), MSR206 serial encoders (msr.py) and a simulated one on a pseudo-terminal
(msr_simulator.py), DESFire native commands (desfire.py) and AN10922 key
diversification (diversify.py). PC/SC readers come with the personalization work.
"""
