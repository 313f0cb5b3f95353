"""What to use instead of the attributes prefetch-generator 1.0.3 had and this package has not.

1.0.3's ``BackgroundGenerator`` subclassed ``threading.Thread`` and kept its
queue and source as plain attributes. A program that reads one of them gets an
``AttributeError`` that says what replaces it; any other missing attribute
keeps Python's own message.
"""

MIGRATION_SECTION = "Migrating from 1.0.3"

_NOT_A_THREAD = "1.0.3's BackgroundGenerator was a threading.Thread; this one is not"
_THREAD_IDENTITY = (
    f"{_NOT_A_THREAD}: the worker is a thread of its own, named 'prefetch_generator', "
    "and nothing needs it"
)
_NO_DAEMON_FLAG = (
    f"{_NOT_A_THREAD}: there is no daemon flag; live workers are stopped at interpreter "
    "exit, after the program's non-daemon threads end"
)

REPLACEMENTS = {
    "is_alive": f"{_NOT_A_THREAD}: use is_running()",
    "join": f"{_NOT_A_THREAD}: use close() (or a with block), which stops the worker and "
    "waits for it, bounded",
    "start": f"{_NOT_A_THREAD}: the worker starts when the BackgroundGenerator is created",
    "run": f"{_NOT_A_THREAD}: the worker runs the source by itself; iterate over the "
    "BackgroundGenerator",
    "name": _THREAD_IDENTITY,
    "getName": _THREAD_IDENTITY,
    "setName": _THREAD_IDENTITY,
    "ident": _THREAD_IDENTITY,
    "native_id": _THREAD_IDENTITY,
    "daemon": _NO_DAEMON_FLAG,
    "isDaemon": _NO_DAEMON_FLAG,
    "setDaemon": _NO_DAEMON_FLAG,
    "queue": "the buffer is internal: stats().buffered counts the items waiting in it, "
    "max_prefetch is its bound",
    "generator": "the source belongs to the worker thread: keep a reference of your own "
    "if you need it",
    "Continue": "use is_running() for whether the worker is at work; next() raises "
    "StopIteration once the stream has ended",
    "preprocess_func": "preprocess_func is applied in the worker and not kept; wrap the "
    "source instead: BackgroundGenerator(map(func, source))",
}
"""1.0.3's public attributes that are gone, each with what to use instead."""


def missing_attribute(owner: object, name: str) -> AttributeError:
    """The AttributeError for ``owner.name``, saying what replaces a 1.0.3 attribute."""
    message = f"{type(owner).__name__!r} object has no attribute {name!r}"
    replacement = REPLACEMENTS.get(name)
    if replacement is not None:
        message += f" ({replacement}; see {MIGRATION_SECTION!r} in the README)"
    return AttributeError(message)
