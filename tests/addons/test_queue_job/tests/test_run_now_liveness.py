# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Run Now leaves no liveness lock behind, whatever its jobs do.

Real connections from Odoo's pool, as an HTTP worker's: a session lock left
on one of them would outlive the request, until the pool lends the
connection again, and a runner claiming that job would wait for it under the
claim lock.
"""

import ast

import psycopg2

from odoo import SUPERUSER_ID, api
from odoo.orm.environments import Transaction
from odoo.sql_db import connection_info_for, db_connect
from odoo.tests import TransactionCase, tagged
from odoo.tools import mute_logger

from odoo.addons.queue_job.delay import chain


@tagged("post_install", "-at_install")
class TestRunNowLiveness(TransactionCase):
    def real_cursor(self):
        """A cursor from Odoo's pool, outside the test transaction (see
        test_identity_concurrency)."""
        cr = db_connect(self.env.cr.dbname).cursor()
        cr.transaction = Transaction(self.registry)
        return cr

    def liveness_locks(self):
        """Job ids whose liveness lock some session of the database holds."""
        return self.env["test.queue.job"].liveness_locks_held()

    def committed_jobs(self, make):
        """Store the jobs that ``make(record)`` delays on a real cursor; their ids.

        They and their record are deleted at the end of the test.
        """
        with self.real_cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            record = env["test.queue.job"].create({"name": "run now"})
            job_ids = make(record)
            cr.commit()
        self.addCleanup(self.delete_committed, record.id, job_ids)
        return job_ids

    def delete_committed(self, record_id, job_ids):
        with self.real_cursor() as cr:
            cr.execute("DELETE FROM queue_job WHERE id = ANY(%s)", (job_ids,))
            cr.execute("DELETE FROM test_queue_job WHERE id = %s", (record_id,))
            cr.commit()

    def test_run_now_of_a_committing_job_leaves_no_lock(self):
        function = self.env.ref("test_queue_job.job_function_commit_inside")
        with self.real_cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["queue.job.function"].browse(function.id).allow_commit = True
            cr.commit()
        self.addCleanup(self.set_allow_commit, function.id, False)
        (job_id,) = self.committed_jobs(lambda record: [record.with_delay().commit_inside().id])
        with self.real_cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["queue.job"].browse(job_id).run_now()
            cr.commit()
            cr.execute("SELECT state, exc_info FROM queue_job WHERE id = %s", (job_id,))
            self.assertEqual(cr.fetchone(), ("done", None))
        self.assertEqual(self.liveness_locks(), [])

    def set_allow_commit(self, function_id, allow_commit):
        with self.real_cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["queue.job.function"].browse(function_id).allow_commit = allow_commit
            cr.commit()

    def test_run_now_failing_to_serialize_leaves_no_lock(self):
        def graph(record):
            first, second = record.delayable().echo(1), record.delayable().echo(2)
            chain(first, second).delay()
            return [first._generated_job.id, second._generated_job.id]

        first_id, second_id = self.committed_jobs(graph)
        with self.real_cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            cr.execute("SELECT 1")  # this transaction's snapshot
            # A concurrent transaction writes on the dependent: releasing it
            # in Run Now's REPEATABLE READ transaction fails to serialize
            # (Odoo's request handling would retry the request).
            with psycopg2.connect(**connection_info_for(cr.dbname)[1]) as other:
                with other.cursor() as other_cr:
                    other_cr.execute(
                        "UPDATE queue_job SET priority = 7 WHERE id = %s", (second_id,)
                    )
            other.close()
            with mute_logger("odoo.sql_db"), self.assertRaises(psycopg2.errors.SerializationFailure):
                env["queue.job"].browse(first_id).run_now()
            cr.rollback()
        self.assertEqual(self.liveness_locks(), [])
        with self.real_cursor() as cr:
            cr.execute("SELECT state FROM queue_job WHERE id = %s", (first_id,))
            self.assertEqual(cr.fetchone(), ("pending",), "the request rolled back")

    def test_run_now_drops_each_lock_when_its_job_is_over(self):
        # Jobs allowed to commit: each one's outcome is committed when it is
        # over; were it pending again, a runner claiming it must not wait for
        # its lock while Run Now runs the next job.
        job_ids = self.committed_jobs(
            lambda record: [record.with_delay().liveness_locks_held().id for _job in range(2)]
        )
        with self.real_cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["queue.job"].browse(job_ids).run_now()
            cr.commit()
            cr.execute("SELECT id, state, result FROM queue_job WHERE id = ANY(%s)", (job_ids,))
            rows = cr.fetchall()
        self.assertEqual({state for _id, state, _result in rows}, {"done"})
        seen = {job_id: ast.literal_eval(result) for job_id, _state, result in rows}
        first, second = sorted(job_ids, key=lambda job_id: -len(seen[job_id]))
        self.assertEqual(seen[first], sorted(job_ids), "both locks held while the first runs")
        self.assertEqual(seen[second], [second], "the first one's dropped when it was over")
        self.assertEqual(self.liveness_locks(), [])

    def test_run_now_runs_the_jobs_allowed_to_commit_last(self):
        # The first of them commits what Run Now did so far: a job running
        # in the request's transaction after it would be seen started with
        # its lock dropped before its outcome is committed.
        committing, in_savepoint = self.committed_jobs(
            lambda record: [
                record.with_delay().liveness_locks_held().id,
                record.with_delay().committed_state().id,
            ]
        )
        with self.real_cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["queue.job"].browse([committing, in_savepoint]).run_now()
            cr.commit()
            cr.execute(
                "SELECT id, state, result FROM queue_job WHERE id = ANY(%s) ORDER BY id",
                ([committing, in_savepoint],),
            )
            rows = cr.fetchall()
        self.assertEqual(
            rows,
            [(committing, "done", str([committing])), (in_savepoint, "done", "pending")],
        )

    def test_run_now_of_a_job_failing_to_serialize_leaves_no_lock(self):
        (job_id,) = self.committed_jobs(lambda record: [record.with_delay().fail_to_serialize(1).id])
        with self.real_cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["queue.job"].browse(job_id).run_now()
            cr.commit()
            cr.execute("SELECT state, retry, exc_name FROM queue_job WHERE id = %s", (job_id,))
            self.assertEqual(cr.fetchone(), ("pending", 0, "psycopg2.errors.SerializationFailure"))
        self.assertEqual(self.liveness_locks(), [])
