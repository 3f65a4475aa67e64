"""Who the call being served acts for, so that every core request it makes says so: the
identity code of an operator or bureau (the low 32 bits of its certificate serial, as
`cardgate pki list` shows serials), kept in the journal entries the request posts and in
the admin log (`cardgate admin-log`); 0 for a terminal, and without TLS.

The rpc decorator sets it around each call (a context variable: each call's task or
thread sees its own); Operations.pack stamps it into the requests it packs.
"""
import contextvars

ACTOR = contextvars.ContextVar("cardgate_actor", default=0)
ACTING_ROLES = ("operator", "bureau")


def actor_code(identity) -> int:
    """The actor code of a caller's identity (None: without TLS): 0 for a terminal."""
    if identity is None or identity.role not in ACTING_ROLES:
        return 0
    return identity.serial & 0xFFFF_FFFF
