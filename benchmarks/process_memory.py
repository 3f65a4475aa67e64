"""Resident memory of a process, from /proc/PID/status."""


def rss_mib(pid) -> dict:
    """{"VmRSS", "RssAnon", "RssFile"} in MiB: all resident memory; anonymous (the heap);
    file-backed (for the gateway: the store's pages mapped in, which grow with the data
    touched and which the kernel may drop)."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0]) / 1024
    return fields
