# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The adoption of OCA's jobs (``from_oca.prepare``, ``adopt``) on a real database.

Each test gives the table OCA's columns in a transaction that it rolls back,
inserts jobs as OCA stores them, adopts them and checks states, edges and
counters. ``tests/e2e/test_switch_from_oca.py`` does the same with OCA's
addon itself and a real ``odoo -u``.
"""

import json
import uuid

import pytest
from jobs import counter_mismatches, insert_job, job_row
from psycopg2.extras import Json

from queue_job import from_oca
from queue_job.core import schema

OCA_COLUMNS = """
    ALTER TABLE queue_job ADD COLUMN dependencies text, ADD COLUMN date_cancelled timestamp,
        ADD COLUMN records jsonb, ADD COLUMN args jsonb, ADD COLUMN kwargs jsonb,
        ADD COLUMN record_ids jsonb, ALTER COLUMN pending_dependency_count DROP NOT NULL;
    CREATE TABLE queue_job_function (id serial PRIMARY KEY, retry_pattern jsonb,
                                     related_action jsonb);
    CREATE TABLE queue_job_lock (id integer PRIMARY KEY,
                                 queue_job_id integer REFERENCES queue_job ON DELETE CASCADE);
"""


@pytest.fixture
def cr(conn):
    """A cursor on a queue_job table with OCA's columns, rolled back after the test."""
    with conn.cursor() as cr:
        cr.execute(OCA_COLUMNS)
        yield cr
    conn.rollback()


class OcaJobs:
    """Jobs inserted as OCA stores them: links by uuid in ``dependencies``."""

    def __init__(self, cr):
        self.cr = cr
        self.uuids = {}
        self.ids = {}

    def uuid(self, name):
        return self.uuids.setdefault(name, str(uuid.uuid4()))

    def add(self, name, state, depends_on=(), reverse_depends_on=(), **values):
        links = {
            "depends_on": [self.uuid(dep) for dep in depends_on],
            "reverse_depends_on": [self.uuid(dep) for dep in reverse_depends_on],
        }
        self.ids[name] = insert_job(
            self.cr, state=state, name=name, uuid=self.uuid(name),
            dependencies=json.dumps(links), pending_dependency_count=None, **values,
        )

    def edges(self):
        """{(dependent, dependency): released}"""
        names = {job_id: name for name, job_id in self.ids.items()}
        self.cr.execute("SELECT job_id, dependency_id, released FROM queue_job_dependency")
        return {(names[job], names[dep]): released for job, dep, released in self.cr.fetchall()}

    def summary(self):
        """{name: (state, pending_dependency_count, exc_name)}"""
        result = {}
        for name, job_id in self.ids.items():
            row = job_row(self.cr, job_id)
            result[name] = (row["state"], row["pending_dependency_count"], row["exc_name"])
        return result


def test_links_become_edges_counters_and_cascades(cr):
    oca = OcaJobs(cr)
    # group(a, b).on_done(c), a done
    oca.add("a", "done", reverse_depends_on=["c"])
    oca.add("b", "pending", reverse_depends_on=["c"])
    oca.add("c", "wait_dependencies", depends_on=["a", "b"])
    # chain(d, e, f), d done and e enqueued by OCA
    oca.add("d", "done", reverse_depends_on=["e"])
    oca.add("e", "pending", depends_on=["d"], reverse_depends_on=["f"])
    oca.add("f", "wait_dependencies", depends_on=["e"])
    # chain(g, h, i), g failed: OCA leaves h and i waiting
    oca.add("g", "failed", reverse_depends_on=["h"])
    oca.add("h", "wait_dependencies", depends_on=["g"], reverse_depends_on=["i"])
    oca.add("i", "wait_dependencies", depends_on=["h"])
    # k cancelled, l waiting on it
    oca.add("k", "cancelled", reverse_depends_on=["l"])
    oca.add("l", "wait_dependencies", depends_on=["k"])
    # m's dependency was deleted by OCA's autovacuum
    oca.add("m", "wait_dependencies", depends_on=["gone"])
    # n: both dependencies done, OCA missed the release; one link on one side only
    oca.add("n1", "done", reverse_depends_on=["n"])
    oca.add("n2", "done", reverse_depends_on=["n"])
    oca.add("n", "wait_dependencies", depends_on=["n1"])
    oca.add("enqueued", "enqueued", retry=2)
    oca.add("started", "started", retry=2)

    assert from_oca.adopt(cr) is True

    assert oca.edges() == {
        ("c", "a"): True, ("c", "b"): False,
        ("e", "d"): True, ("f", "e"): False,
        ("h", "g"): False, ("i", "h"): False,
        ("l", "k"): False,
        ("n", "n1"): True, ("n", "n2"): True,
    }
    assert counter_mismatches(cr) == []
    summary = oca.summary()
    assert {name: summary[name] for name in "bcefhilmn"} == {
        "b": ("pending", 0, None),
        "c": ("wait_dependencies", 1, None),
        "e": ("pending", 0, None),
        "f": ("wait_dependencies", 1, None),
        "h": ("failed", 1, "DependencyFailed"),
        "i": ("failed", 1, "DependencyFailed"),
        "l": ("cancelled", 1, "DependencyCancelled"),
        "m": ("pending", 0, None),
        "n": ("pending", 0, None),
    }
    assert "Dependency g (" in job_row(cr, oca.ids["i"])["exc_message"]
    enqueued, started = job_row(cr, oca.ids["enqueued"]), job_row(cr, oca.ids["started"])
    assert (enqueued["state"], enqueued["retry"]) == ("pending", 2), "no try taken"
    assert (started["state"], started["retry"]) == ("started", 3), "the try it was in"
    # OCA's columns are gone with the adoption: a later update adopts nothing again.
    assert not from_oca.has_oca_layout(cr)
    assert from_oca.adopt(cr) is False
    assert counter_mismatches(cr) == []


def test_json_strings_dates_and_oca_tables(cr):
    oca = OcaJobs(cr)
    records = {"_type": "odoo_recordset", "model": "res.partner", "ids": [7, 8], "uid": 2}
    # OCA's JobSerialized: JSON text inside a jsonb string
    oca.add("done", "done", records=Json(json.dumps(records)), args=Json("[1, 2]"),
            kwargs=Json('{"body": "x"}'), result="kept", exc_info=None)
    oca.add("cancelled", "cancelled", records=Json(records), args=Json([]),
            kwargs=Json({}), date_cancelled="2026-11-30 10:00:00")
    cr.execute(
        "INSERT INTO queue_job_function (retry_pattern, related_action)"
        " VALUES (%s, %s), (%s, NULL)",
        (Json('{"1": 60, "5": 300}'), Json('{"enable": false}'), Json({"3": 10})),
    )

    from_oca.adopt(cr)

    done = job_row(cr, oca.ids["done"])
    assert (done["records"], done["args"], done["kwargs"]) == (records, [1, 2], {"body": "x"})
    assert (done["record_ids"], done["result"], done["state"]) == ([7, 8], "kept", "done")
    cancelled = job_row(cr, oca.ids["cancelled"])
    assert cancelled["records"] == records and cancelled["record_ids"] == [7, 8]
    assert str(cancelled["date_done"]) == "2026-11-30 10:00:00"
    cr.execute("SELECT retry_pattern, related_action FROM queue_job_function ORDER BY id")
    assert cr.fetchall() == [({"1": 60, "5": 300}, {"enable": False}), ({"3": 10}, None)]
    cr.execute("SELECT to_regclass('queue_job_lock')")
    assert cr.fetchone()[0] is None


def test_a_database_of_ours_is_left_alone(conn):
    with conn, conn.cursor() as cr:
        job_id = insert_job(cr, state="started", retry=1)
        assert from_oca.adopt(cr) is False
        assert (job_row(cr, job_id)["state"], job_row(cr, job_id)["retry"]) == ("started", 1)


def test_twins_by_identity_key_keep_it_once(cr):
    cr.execute("DROP INDEX queue_job_identity_key_uniq")  # OCA has none
    oca = OcaJobs(cr)
    for name, state in (("old", "pending"), ("twin", "enqueued"), ("ran", "done")):
        oca.add(name, state, identity_key="same")
    oca.add("alone", "pending", identity_key="other")

    assert from_oca.prepare(cr) is True
    schema.ensure(cr)  # the unique index can be created

    keys = {name: job_row(cr, job_id)["identity_key"] for name, job_id in oca.ids.items()}
    assert keys == {"old": "same", "twin": None, "ran": "same", "alone": "other"}
