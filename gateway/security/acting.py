"""Who the call being served is made by: the caller's Identity, set by the rpc decorator
once its access was checked (a context variable: each call's task or thread sees its own;
None without TLS). Servicers read it instead of asking access control again, and every
core request the call makes carries its actor code (Operations.pack): the identity code
of an operator or bureau (the low 32 bits of its certificate serial, as `cardgate pki
list` shows serials), kept in the journal entries the request posts and in the admin log
(`cardgate admin-log`); 0 for a terminal, and without TLS.
"""
import contextvars

CALLER = contextvars.ContextVar("cardgate_caller", default=None)
ACTING_ROLES = ("operator", "bureau")


def actor_code(identity) -> int:
    """The actor code of a caller's identity (None: without TLS): 0 for a terminal."""
    if identity is None or identity.role not in ACTING_ROLES:
        return 0
    return identity.serial & 0xFFFF_FFFF


def actor() -> int:
    """The actor code of the call being served."""
    return actor_code(CALLER.get())
