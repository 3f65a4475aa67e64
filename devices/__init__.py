"""Card readers and encoders, and their simulators: ISO 7813 magnetic stripe tracks
(tracks.py), MSR206 serial encoders (msr.py) and a simulated one on a pseudo-terminal
(msr_simulator.py), DESFire EV1 commands (desfire.py) and their cryptography
(desfire_crypto.py), AN10922 key diversification (diversify.py), PC/SC readers through
pcscd (pcsc.py), a simulated DESFire EV1 card in vpcd's virtual readers (vpcd.py,
desfire_card.py) and chip personalization from the factory state (personalize.py).
"""
