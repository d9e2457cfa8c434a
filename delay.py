# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Build job graphs: ``delayable()``, ``chain()``, ``group()``, ``on_done()``.

Every builder here only records calls and edges in memory. ``delay()``
validates the whole graph it belongs to (every call, every option, no cycle)
before anything is written, then stores all its jobs and edges in one go: a
graph is stored whole or not at all, and since jobs that wait are inserted
waiting, in the same transaction as their edges, no runner can start a
dependent before its dependencies are done.
"""

import uuid

from .job import Job, must_run_without_delay, run_inline


def chain(*delayables):
    """Run ``delayables`` one after the other; each may be a chain or a group."""
    return DelayableChain(*delayables)


def group(*delayables):
    """Run ``delayables`` in parallel; ``on_done`` waits for all of them."""
    return DelayableGroup(*delayables)


def _connect(dependencies, dependents):
    """Make every node of ``dependents`` wait for every node of ``dependencies``."""
    for dependent in dependents:
        for dependency in dependencies:
            # dicts as ordered sets: jobs are stored in the order they were linked
            dependent._depends_on[dependency] = None
            dependency._reverse_depends_on[dependent] = None


class _Composite:
    """What chains, groups and single delayables share: ``on_done`` and ``delay``.

    ``_head()`` are the delayables that start the composite, ``_tail()`` the
    ones that end it.
    """

    def on_done(self, *delayables):
        """Make ``delayables`` run once all of this is done; returns self."""
        for delayable in delayables:
            _connect(self._tail(), delayable._head())
        return self

    def delay(self):
        """Store the whole graph this belongs to (or run it, in no-delay mode)."""
        # Members of a group are not linked to each other: start from every head.
        return _delay_graph(self._head())


class DelayableChain(_Composite):
    """Delayables run in sequence: each waits for the one before it."""

    def __init__(self, *delayables):
        if not delayables:
            raise ValueError("chain() needs at least one delayable")
        self._delayables = delayables
        for before, after in zip(delayables, delayables[1:]):
            _connect(before._tail(), after._head())

    def _head(self):
        return self._delayables[0]._head()

    def _tail(self):
        return self._delayables[-1]._tail()

    def __repr__(self):
        return f"DelayableChain({', '.join(map(repr, self._delayables))})"


class DelayableGroup(_Composite):
    """Delayables run in parallel."""

    def __init__(self, *delayables):
        if not delayables:
            raise ValueError("group() needs at least one delayable")
        self._delayables = delayables

    def _head(self):
        return [node for delayable in self._delayables for node in delayable._head()]

    def _tail(self):
        return [node for delayable in self._delayables for node in delayable._tail()]

    def __repr__(self):
        return f"DelayableGroup({', '.join(map(repr, self._delayables))})"


class Delayable(_Composite):
    """One method call on a recordset, to become a job of a graph.

    ``record.delayable(priority=20).method(arg)`` records the call and
    returns the delayable, so calls chain as a builder.
    """

    _properties = (
        "priority", "eta", "max_retries", "description", "channel", "identity_key",
    )

    def __init__(self, recordset, **properties):
        self.recordset = recordset
        self._depends_on = {}
        self._reverse_depends_on = {}
        self._job_method = None
        self._job_args = ()
        self._job_kwargs = {}
        self._generated_job = None
        for name in self._properties:
            setattr(self, name, properties.pop(name, None))
        if properties:
            raise TypeError(f"unknown job properties: {', '.join(properties)}")

    def _head(self):
        return [self]

    def _tail(self):
        return [self]

    def __repr__(self):
        method = self._job_method.__name__ if self._job_method else "?"
        return f"Delayable({self.recordset!r}.{method}(...))"

    def set(self, *args, **kwargs):
        """Set job properties, from a dict and/or keywords; returns self."""
        for properties in (*args, kwargs):
            for name, value in properties.items():
                if name not in self._properties:
                    raise ValueError(f"{name!r} is not a job property")
                setattr(self, name, value)
        return self

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        method = getattr(self.recordset, name)  # AttributeError for an unknown method
        if not callable(method):
            raise AttributeError(f"{self.recordset._name}.{name} is not a method")

        def store_call(*args, **kwargs):
            if self._job_method is not None:
                raise ValueError(f"{self!r} already has a call: one call per delayable")
            self._job_method = method
            self._job_args = args
            self._job_kwargs = kwargs
            return self

        return store_call

    def split(self, size, chain=False):
        """This call on batches of ``size`` records, as a group (or a chain).

        Descriptions get a `` (split i/n)`` suffix. Returns the new group or
        chain; this delayable itself is not delayed.
        """
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"split size must be a positive integer, got {size!r}")
        if self._job_method is None:
            raise ValueError(f"{self!r} has no call to split")
        records = self.recordset
        count = (len(records) + size - 1) // size
        description = self.description or self._job_method.__name__
        parts = []
        for index in range(count):
            part = Delayable(records[index * size : (index + 1) * size])
            part.set({name: getattr(self, name) for name in self._properties})
            part.set(description=f"{description} (split {index + 1}/{count})")
            getattr(part, self._job_method.__name__)(*self._job_args, **self._job_kwargs)
            parts.append(part)
        return (DelayableChain if chain else DelayableGroup)(*parts)

    def _build_job(self):
        if self._job_method is None:
            raise ValueError(f"{self!r}: call a method on the delayable before delay()")
        if self.identity_key and self._depends_on:
            raise ValueError(
                f"{self!r}: identity_key is only supported on jobs that wait for "
                "no other job"
            )
        return Job(
            self._job_method,
            args=self._job_args,
            kwargs=self._job_kwargs,
            **{name: getattr(self, name) for name in self._properties},
        )


def _graph_of(heads):
    """Every delayable connected to ``heads``, in topological order.

    Peers keep the order they were built in, so stored ids follow the graph.
    Raises ValueError on a cycle.
    """
    # Collect the connected component, then sort it (Kahn's algorithm).
    nodes = dict.fromkeys(heads)
    stack = list(heads)
    while stack:
        node = stack.pop()
        for other in (*node._depends_on, *node._reverse_depends_on):
            if other not in nodes:
                nodes[other] = None
                stack.append(other)
    waiting = {node: len(node._depends_on) for node in nodes}
    ready = [node for node, count in waiting.items() if not count]
    ordered = []
    while ready:
        node = ready.pop(0)
        ordered.append(node)
        for dependent in node._reverse_depends_on:
            waiting[dependent] -= 1
            if not waiting[dependent]:
                ready.append(dependent)
    if len(ordered) != len(nodes):
        raise ValueError("the job graph has a cycle: on_done() links loop back")
    return ordered


def _delay_graph(heads):
    nodes = _graph_of(heads)
    delayed = [node for node in nodes if node._generated_job is not None]
    if delayed:
        raise ValueError(f"{delayed[0]!r} was already delayed")
    jobs = {node: node._build_job() for node in nodes}  # validates before storing
    if len(nodes) > 1:
        graph_uuid = str(uuid.uuid4())
        for job_ in jobs.values():
            job_.graph_uuid = graph_uuid
    for node, job_ in jobs.items():
        job_.depends_on = {jobs[dep] for dep in node._depends_on}
        job_.reverse_depends_on = {jobs[dep] for dep in node._reverse_depends_on}
        node._generated_job = job_
    if any(must_run_without_delay(job_.env) for job_ in jobs.values()):
        run_inline(list(jobs.values()))  # topological order
    else:
        Job.store_many(nodes[0].recordset.env, list(jobs.values()))
    return nodes[0]._generated_job if len(nodes) == 1 else None


class DelayableRecordset:
    """``record.with_delay(...)``: the next method call is stored as a job.

    ``record.with_delay(priority=5).method(arg)`` returns the :class:`Job`.
    """

    def __init__(self, recordset, **properties):
        self._delayable_properties = properties
        self.recordset = recordset

    def __getattr__(self, name):
        delayable = Delayable(self.recordset, **self._delayable_properties)
        store_call = getattr(delayable, name)

        def delay(*args, **kwargs):
            return store_call(*args, **kwargs).delay()

        return delay

    def __str__(self):
        return f"DelayableRecordset({self.recordset._name}{self.recordset._ids!r})"
