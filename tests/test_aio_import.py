"""Importing uringio (and uringio.aio), and running a program on its loop,
leave asyncio's event-loop policy alone: Python 3.14 deprecates the policy
API (a DeprecationWarning on each access) and 3.16 removes it. Only asking
for ``EventLoopPolicy`` (or calling ``install``) goes near it, as in uvloop.

The interpreter here may predate the deprecation, so the checks do not wait
for its warning: each runs in a fresh interpreter in which every policy name
of asyncio is watched before uringio is imported. Three watches, because
there are three ways in:

* an attribute read (``asyncio.DefaultEventLoopPolicy``, ``from asyncio
  import ...``, ``asyncio.events.get_event_loop_policy``): the modules'
  class becomes a subclass whose properties for those names record the read;
* a call from inside ``asyncio.events`` itself (``set_event_loop`` calls
  ``get_event_loop_policy()`` as a global, past any attribute): those
  functions are replaced, in the module's dict, by recording wrappers;
* C code that holds the function from before the watch (``_asyncio``'s
  ``get_event_loop``, ``Future()`` with no loop): the installed policy is a
  stand-in that records every attribute read of it, put in place without
  calling ``set_event_loop_policy``.

The positive checks (asking for the policy, ``install``, asyncio's own
``asyncio.run``, ``get_event_loop`` with no loop running) show the watch
sees what it should.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

import uringio
import uringio.aio
from conftest import REPO

WATCH = r'''
import asyncio
import asyncio.events
import asyncio.unix_events
import types
import warnings

TOUCHED = []

POLICY_NAMES = ("AbstractEventLoopPolicy", "DefaultEventLoopPolicy",
                "BaseDefaultEventLoopPolicy", "_AbstractEventLoopPolicy",
                "_DefaultEventLoopPolicy", "_BaseDefaultEventLoopPolicy",
                "get_event_loop_policy", "set_event_loop_policy",
                "_get_event_loop_policy", "_set_event_loop_policy",
                "_init_event_loop_policy")

with warnings.catch_warnings():   # 3.14 warns here; before the watch, so not recorded
    warnings.simplefilter("ignore", DeprecationWarning)
    _real_policy = asyncio.DefaultEventLoopPolicy()


def _property(module_name, name):
    def get(self):
        TOUCHED.append(f"{module_name}.{name}")
        try:
            return vars(self)[name]
        except KeyError:
            pass
        module_getattr = vars(self).get("__getattr__")   # 3.14 moves some names there
        if module_getattr is None:
            raise AttributeError(name)
        return module_getattr(name)

    def set(self, value):
        vars(self)[name] = value
    return property(get, set)


def _recording(module_name, name, func):
    def wrapper(*args, **kwargs):
        TOUCHED.append(f"{module_name}.{name}()")
        return func(*args, **kwargs)
    return wrapper


for _module in (asyncio.events, asyncio.unix_events):   # calls made as globals
    for _name in POLICY_NAMES:
        _func = vars(_module).get(_name)
        if isinstance(_func, types.FunctionType):
            vars(_module)[_name] = _recording(_module.__name__, _name, _func)

for _module in (asyncio, asyncio.events, asyncio.unix_events):   # attribute reads
    _module.__class__ = type("Watched", (type(_module),),
                             {n: _property(_module.__name__, n) for n in POLICY_NAMES})


class _WatchedPolicy:
    """The installed policy, as C code (and anything else) reaches it."""

    def __getattribute__(self, name):
        TOUCHED.append(f"policy.{name}")
        return getattr(_real_policy, name)


vars(asyncio.events)["_event_loop_policy"] = _WatchedPolicy()
'''

# The program a test runs, with what it used: an echo over a stream, a
# future, timers, a task, the default executor.
MAIN = r'''
async def main():
    loop = asyncio.get_running_loop()
    assert asyncio.get_event_loop() is loop
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 1)
    assert await fut == 1
    await asyncio.sleep(0.01)
    assert await asyncio.create_task(asyncio.sleep(0, "t")) == "t"
    assert await asyncio.wait_for(asyncio.sleep(0, "w"), 5) == "w"
    assert await loop.run_in_executor(None, sum, [1, 2]) == 3

    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
    writer.write(b"ping")
    assert await reader.read(100) == b"ping"
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return 42
'''


def touched(code: str, backend: str = "epoll") -> list[str]:
    """The policy names ``code`` touched, run in a fresh interpreter after
    the watch is set."""
    program = "\n".join([WATCH, f"BACKEND = {backend!r}", MAIN, textwrap.dedent(code),
                         "import json as _json",
                         "print('TOUCHED=' + _json.dumps(TOUCHED))"])
    proc = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("TOUCHED=")]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0].removeprefix("TOUCHED="))


# -- uringio leaves the policy alone -----------------------------------------

@pytest.mark.parametrize("code", [
    "import uringio",
    "import uringio.aio",
    "import uringio.aio.loop, uringio.aio.files",
    "from uringio.aio import EventLoop, install, new_event_loop, run",
    "from uringio import EventLoop, install, new_event_loop, run, files, open_file",
    "import uringio.aio; dir(uringio.aio); hasattr(uringio.aio, 'nothing')",
    # every other public name of both, each of which may import more
    """
    import uringio, uringio.aio
    for module in (uringio, uringio.aio):
        for name in module.__all__:
            if name != "EventLoopPolicy":
                getattr(module, name)
    """,
], ids=["uringio", "aio", "aio-modules", "from-aio", "from-uringio", "dir", "all-names"])
def test_importing_touches_no_policy(code):
    assert touched(code) == []


def test_uringio_run_touches_no_policy(backend):
    assert touched("""
        import uringio
        assert uringio.run(main(), backend=BACKEND) == 42
        assert uringio.run(main(), backend=BACKEND, debug=True) == 42
    """, backend) == []


def test_new_event_loop_touches_no_policy(backend):
    assert touched("""
        import uringio, uringio.aio
        loop = uringio.new_event_loop(BACKEND)
        try:
            assert loop.run_until_complete(main()) == 42
        finally:
            loop.close()
        with asyncio.Runner(loop_factory=lambda: uringio.new_event_loop(BACKEND)) as runner:
            assert runner.run(main()) == 42
        for factory in (uringio.aio.new_event_loop_uring, uringio.aio.new_event_loop_epoll):
            if factory.__name__.endswith(BACKEND):
                with asyncio.Runner(loop_factory=factory) as runner:
                    assert runner.run(main()) == 42
    """, backend) == []


# -- and the watch sees what does touch it -----------------------------------

@pytest.mark.parametrize("code", [
    "import uringio.aio; uringio.aio.EventLoopPolicy",
    "import uringio; uringio.EventLoopPolicy",
    "from uringio.aio import EventLoopPolicy",
    "from uringio import EventLoopPolicy",
], ids=["aio-attr", "uringio-attr", "from-aio", "from-uringio"])
def test_asking_for_the_policy_touches_it(code):
    assert "asyncio.DefaultEventLoopPolicy" in touched(code)


def test_install_touches_it_and_makes_uringio_loops(backend):
    seen = touched("""
        import uringio
        uringio.install(BACKEND)
        loop = asyncio.new_event_loop()
        assert isinstance(loop, uringio.EventLoop) and loop.backend == BACKEND, loop
        loop.close()
        policy = uringio.EventLoopPolicy(BACKEND)
        loop = policy.new_event_loop()
        assert isinstance(loop, uringio.EventLoop) and loop.backend == BACKEND, loop
        loop.close()
    """, backend)
    assert {"asyncio.set_event_loop_policy", "asyncio.events.set_event_loop_policy()"} & set(seen)


@pytest.mark.parametrize("code", [
    "asyncio.run(asyncio.sleep(0))",          # asyncio's loop: the policy makes it
    "asyncio.get_event_loop().close()",       # C's get_event_loop, with no loop running
    "asyncio.events.set_event_loop(None)",    # a global call inside asyncio.events
    "from asyncio import AbstractEventLoopPolicy",
])
def test_the_watch_sees_asyncio_use_the_policy(code):
    assert touched(f"import warnings\nwarnings.simplefilter('ignore')\n{code}") != []


# -- what asking gives --------------------------------------------------------

def test_the_policy_is_made_once_and_is_asyncios_default(backend):
    policy_class = uringio.aio.EventLoopPolicy
    assert policy_class is uringio.EventLoopPolicy is uringio.aio.EventLoopPolicy
    assert issubclass(policy_class, asyncio.DefaultEventLoopPolicy)
    assert "EventLoopPolicy" in dir(uringio.aio)
    loop = policy_class(backend).new_event_loop()
    try:
        assert isinstance(loop, uringio.EventLoop) and loop.backend == backend
    finally:
        loop.close()


def test_unknown_names_are_still_attribute_errors():
    with pytest.raises(AttributeError, match="nothing"):
        uringio.aio.nothing  # noqa: B018
    with pytest.raises(AttributeError, match="nothing"):
        uringio.nothing  # noqa: B018
    with pytest.raises(ImportError):
        from uringio.aio import nothing  # noqa: F401


def test_star_imports_name_the_policy_only_before_its_deprecation():
    """``from uringio import *`` takes ``EventLoopPolicy`` only where asyncio's
    policies are not deprecated (3.14) or gone (3.16)."""
    for module in (uringio, uringio.aio):
        assert ("EventLoopPolicy" in module.__all__) == (sys.version_info < (3, 14))
        assert all(hasattr(module, name) for name in module.__all__)
