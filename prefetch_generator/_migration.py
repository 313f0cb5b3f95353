"""What to use instead of the attributes prefetch-generator 1.0.3 had and this package has not.

1.0.3's ``BackgroundGenerator`` subclassed ``threading.Thread`` and kept its
queue and source as plain attributes. A program that reads one of them gets an
``AttributeError`` that says what replaces it; any other missing attribute
keeps Python's own message.
"""

MIGRATION_SECTION = "Migrating from 1.0.3"

_IDENTITY = "the worker is a thread of its own, named 'prefetch_generator'"
_DAEMON = (
    "there is no daemon flag: live workers are stopped at interpreter exit, "
    "after the program's non-daemon threads end"
)

THREAD_REPLACEMENTS = {
    "is_alive": "use is_running()",
    "isAlive": "use is_running()",
    "join": "use close() (or a with block): it stops the worker and waits for it, bounded",
    "start": "the worker starts when the BackgroundGenerator is created",
    "run": "the worker runs the source by itself: iterate over the BackgroundGenerator",
    "name": _IDENTITY,
    "getName": _IDENTITY,
    "setName": _IDENTITY,
    "ident": _IDENTITY,
    "native_id": _IDENTITY,
    "daemon": _DAEMON,
    "isDaemon": _DAEMON,
    "setDaemon": _DAEMON,
}
"""1.0.3's ``threading.Thread`` attributes, each with what to use instead."""

ATTRIBUTE_REPLACEMENTS = {
    "queue": "use stats().buffered for the items waiting, max_prefetch for the bound",
    "generator": "the source belongs to the worker thread: keep a reference of your own",
    "Continue": "use is_running() for whether the worker is at work; "
    "next() raises StopIteration once the stream has ended",
    "preprocess_func": "it is applied in the worker and not kept: "
    "wrap the source instead, BackgroundGenerator(map(func, source))",
}
"""1.0.3's other public attributes, each with what to use instead."""


def missing_attribute(owner: object, name: str) -> AttributeError:
    """The AttributeError for ``owner.name``: Python's message, plus the replacement of 1.0.3's."""
    message = f"{type(owner).__name__!r} object has no attribute {name!r}"
    if name in THREAD_REPLACEMENTS:
        message += (
            ": 1.0.3's BackgroundGenerator was a threading.Thread, this one is not; "
            f"{THREAD_REPLACEMENTS[name]}"
        )
    elif name in ATTRIBUTE_REPLACEMENTS:
        message += f": 1.0.3 had it; {ATTRIBUTE_REPLACEMENTS[name]}"
    else:
        return AttributeError(message)
    return AttributeError(f'{message} (see "{MIGRATION_SECTION}" in the README)')
