"""Checking a pickle's opcodes *before* unpickling it, so that a hostile ``data.pkl`` is refused in
bounded time and memory instead of crashing the interpreter.

Why the restricted unpickler alone is not enough. ``find_class`` stops a pickle from *calling*
anything, but plain data can hurt too. 200 KB of ``TUPLE1`` opcodes build a tuple nested 200,000
deep; used as a dict key, the unpickler hashes it, ``tuple.__hash__`` recurses once per level in C,
and the process dies of a stack overflow (a segfault, not an exception). ``repr``, ``==`` and our
own error messages recurse the same way.

So we walk the opcodes with ``pickletools.genops`` (which decodes them without building anything)
and simulate the unpickler's stack with tiny stand-ins that know only how deep they are nested:

    node.depth  = 0 for a leaf (int, str, an empty container), else 1 + the deepest thing inside it
    APPEND/SETITEM/BUILD/... into a container raise its depth, and that of every container already
    holding it (memo GETs can share one container in many places), so the bound cannot be dodged

and refuse, with a one-line reason and the byte position:

* containers nested deeper than MAX_DEPTH (torch's state dicts need 4 to 6: dict -> REDUCE args -> size tuple),
  or holding more than MAX_ITEMS items, or more than MAX_ITEMS items on the stack or in the memo (30 million
  empty lists, 30 MB of opcodes, take 2.3 GB to build);
* integers beyond 64 bits (``LONG`` text of a million digits takes seconds to parse);
* opcodes a torch state dict never uses and whose only purpose is reaching code or outside data:
  PERSID (text persistent ids; torch uses BINPERSID), EXT1/2/4 (the copyreg extension registry),
  INST/OBJ/NEWOBJ/NEWOBJ_EX (instantiate a class), out-of-band buffers;
* a malformed stream: stack underflow, a missing MARK, a GET of a memo slot never PUT, bytes
  after STOP.

GLOBAL/STACK_GLOBAL and REDUCE pass the scan: the restricted unpickler's ``find_class`` decides
which globals exist (and names the refused one in an UnsafeCheckpointError).
"""
from __future__ import annotations

import pickletools
from typing import List, Optional

MAX_DEPTH = 32
MAX_ITEMS = 1_000_000
MAX_INT = 2 ** 63

# opcodes that push one plain value (a leaf: it never holds anything)
_ATOMS = {
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "FLOAT", "BINFLOAT", "GLOBAL",
}
_EMPTY_CONTAINERS = {"EMPTY_DICT", "EMPTY_LIST", "EMPTY_SET", "EMPTY_TUPLE"}
_FROM_MARK = {"TUPLE", "LIST", "DICT", "FROZENSET"}            # build a new container from the marked items
_INTO_FROM_MARK = {"APPENDS", "SETITEMS", "ADDITEMS"}          # add the marked items to the container below
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_NOTHING = {"PROTO", "FRAME"}
_REFUSED = {
    "PERSID": "a text persistent id (torch writes BINPERSID)",
    "EXT1": "the copyreg extension registry", "EXT2": "the copyreg extension registry",
    "EXT4": "the copyreg extension registry",
    "INST": "instantiating a class", "OBJ": "instantiating a class", "NEWOBJ": "instantiating a class",
    "NEWOBJ_EX": "instantiating a class",
    "BYTEARRAY8": "a bytearray", "NEXT_BUFFER": "out-of-band buffers", "READONLY_BUFFER": "out-of-band buffers",
}


class PickleRefused(Exception):
    """The scan's verdict: the message says what is wrong and at which byte."""


class _Node:
    """A stack item as the scan sees it: how deep it nests, and which containers hold it."""
    __slots__ = ("depth", "holders", "items")

    def __init__(self, depth: int = 0):
        self.depth = depth
        self.holders: Optional[List["_Node"]] = None
        self.items = 0


_LEAF = _Node()      # every atom is the same leaf: it never holds anything, so it need not be tracked
_MARK = object()


def _hold(container: _Node, child: _Node, pos: int) -> None:
    """``container`` now holds ``child``: raise its depth, and that of everything holding it."""
    if container is _LEAF:
        raise PickleRefused(f"malformed pickle: adding items to a value that is not a container (byte {pos})")
    container.items += 1
    if container.items > MAX_ITEMS:
        raise PickleRefused(f"a container with over {MAX_ITEMS:,} items (byte {pos})")
    if child is not _LEAF:
        if child.holders is None:
            child.holders = []
        child.holders.append(container)
    pending = [(container, child.depth + 1)]
    while pending:
        node, depth = pending.pop()
        if depth <= node.depth:
            continue
        if depth > MAX_DEPTH:
            raise PickleRefused(f"containers nested more than {MAX_DEPTH} deep (byte {pos}); "
                                f"a state dict needs fewer than 10")
        node.depth = depth
        pending.extend((holder, depth + 1) for holder in node.holders or ())


def scan(data: bytes) -> None:
    """Raises PickleRefused unless ``data`` is one well-formed pickle whose opcodes, run, would build
    only bounded data (see the module docstring). Runs in time and memory linear in len(data)."""
    stack: list = []
    memo: dict = {}

    def pop(pos):
        if not stack or stack[-1] is _MARK:
            raise PickleRefused(f"malformed pickle: stack underflow (byte {pos})")
        return stack.pop()

    def pop_to_mark(pos):
        items = []
        while True:
            if not stack:
                raise PickleRefused(f"malformed pickle: no MARK before byte {pos}")
            item = stack.pop()
            if item is _MARK:
                return items
            items.append(item)

    def new_container(children, pos):
        node = _Node()
        for child in children:
            _hold(node, child, pos)
        return node

    stopped_at = None
    try:
        for op, arg, pos in pickletools.genops(data):
            name = op.name
            if len(stack) > MAX_ITEMS or len(memo) > MAX_ITEMS:
                raise PickleRefused(f"over {MAX_ITEMS:,} items on the unpickler's stack or memo (byte {pos})")
            if isinstance(arg, int) and not isinstance(arg, bool) and not -MAX_INT <= arg < MAX_INT:
                raise PickleRefused(f"an integer of {arg.bit_length()} bits (byte {pos})")
            if name in _ATOMS:
                stack.append(_LEAF)
            elif name in _EMPTY_CONTAINERS:
                stack.append(_Node() if name != "EMPTY_TUPLE" else _LEAF)
            elif name == "MARK":
                stack.append(_MARK)
            elif name in _FROM_MARK:
                stack.append(new_container(pop_to_mark(pos), pos))
            elif name in _TUPLE_N:
                stack.append(new_container([pop(pos) for _ in range(_TUPLE_N[name])], pos))
            elif name in _INTO_FROM_MARK:
                items = pop_to_mark(pos)
                container = pop(pos)
                for item in items:
                    _hold(container, item, pos)
                stack.append(container)
            elif name in ("APPEND", "BUILD"):
                item = pop(pos)
                container = pop(pos)
                if container is _LEAF and name == "BUILD":
                    container = _Node()      # BUILD on a global: find_class's stand-ins refuse it later
                _hold(container, item, pos)
                stack.append(container)
            elif name == "SETITEM":
                value, key = pop(pos), pop(pos)
                container = pop(pos)
                _hold(container, key, pos)
                _hold(container, value, pos)
                stack.append(container)
            elif name == "STACK_GLOBAL":
                pop(pos), pop(pos)
                stack.append(_LEAF)
            elif name == "REDUCE":          # callable(*args): the result may hold what args held
                args, _ = pop(pos), pop(pos)
                stack.append(new_container([args], pos))
            elif name == "BINPERSID":       # a storage: a leaf, whatever its id tuple held
                pop(pos)
                stack.append(_LEAF)
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if not stack or stack[-1] is _MARK:
                    raise PickleRefused(f"malformed pickle: PUT with nothing to store (byte {pos})")
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise PickleRefused(f"malformed pickle: GET of memo slot {arg} that was never PUT (byte {pos})")
                stack.append(memo[arg])
            elif name == "DUP":
                item = pop(pos)
                stack += [item, item]
            elif name == "POP":
                if stack and stack[-1] is _MARK:
                    stack.pop()
                else:
                    pop(pos)
            elif name == "POP_MARK":
                pop_to_mark(pos)
            elif name in _NOTHING:
                pass
            elif name == "STOP":
                pop(pos)
                stopped_at = pos
            elif name in _REFUSED:
                raise PickleRefused(f"opcode {name} at byte {pos} ({_REFUSED[name]}), which a torch state dict "
                                    f"never uses")
            else:
                raise PickleRefused(f"opcode {name} at byte {pos}, which a torch state dict never uses")
    except PickleRefused:
        raise
    except (ValueError, OverflowError, UnicodeDecodeError, IndexError) as e:
        # genops on truncated or garbage bytes ("no STOP", "truncated", an unknown opcode byte, a huge LONG)
        raise PickleRefused(f"malformed pickle ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if stopped_at is None:
        raise PickleRefused("malformed pickle: it has no STOP opcode")
    if stack:
        raise PickleRefused(f"malformed pickle: {len(stack)} item(s) left on the stack at STOP")
    if stopped_at != len(data) - 1:
        raise PickleRefused(f"{len(data) - 1 - stopped_at} byte(s) after the pickle's STOP opcode")
