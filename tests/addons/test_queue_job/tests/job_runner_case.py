# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""A test case that runs stored jobs the way the jobrunner does.

Jobs are claimed and executed with the runner's own functions, on a
registry cursor in test mode: its commits and rollbacks are savepoints of
the test transaction, so a job's rollback really drops its writes.
"""

from odoo.tests.common import TransactionCase

from odoo.addons.queue_job.execution import run_claimed


class JobRunnerCase(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Job = cls.env["queue.job"]
        cls.Log = cls.env["test.queue.job.log"]
        cls.record = cls.env["test.queue.job"].create({"name": "test record"})

    def job_of(self, job_):
        """The queue.job record of a Job returned by with_delay()/delay()."""
        return self.Job.browse(job_.id)

    def run_job(self, record):
        """Claim ``record`` (pending) as a runner would, then execute it."""
        self.env.flush_all()
        with self.enter_registry_test_mode(), self.registry.cursor() as cr:
            cr.execute(
                "UPDATE queue_job SET state = 'started', retry = retry + 1, "
                "date_started = now() AT TIME ZONE 'UTC' "
                "WHERE id = %s AND state = 'pending' RETURNING *",
                (record.id,),
            )
            row = cr.fetchone()
            # Read before anything else runs on the test's shared cursor.
            columns = [column.name for column in cr.description]
            self.assertTrue(row, f"{record.name} is not pending")
            cr.commit()
            run_claimed(cr, dict(zip(columns, row, strict=True)))
        self.env.invalidate_all()

    def drain(self, limit=100):
        """Run pending jobs (priority, then age order) until none is left."""
        for _ in range(limit):
            pending = self.Job.search(
                [("state", "=", "pending")], order="priority, date_created, id", limit=1
            )
            if not pending:
                return
            self.run_job(pending)
        raise AssertionError("jobs kept coming: a job graph loops?")

    def seconds_to_eta(self, job):
        """Seconds from now to ``job``'s eta, rounded."""
        self.env.cr.execute(
            "SELECT EXTRACT(EPOCH FROM eta - (clock_timestamp() AT TIME ZONE 'UTC')) "
            "FROM queue_job WHERE id = %s",
            (job.id,),
        )
        return round(self.env.cr.fetchone()[0])

    def log_tags(self):
        return self.Log.search([]).mapped("tag")
