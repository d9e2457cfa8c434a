# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The testing example of readme/USAGE.md, run as tests.

The code between the two ``usage example`` comments is that example: Odoo
runs it with the other tests, and TestUsageExampleInReadme fails unless
readme/USAGE.md shows it verbatim, so the documentation cannot drift from
code that works.
"""

import re
from pathlib import Path

from odoo.tools.misc import file_open

# --- usage example: start ---
from odoo.tests import TransactionCase, tagged

from odoo.addons.queue_job.delay import chain, group
from odoo.addons.queue_job.tests.common import trap_jobs


@tagged("post_install", "-at_install")
class TestCounterJobs(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.record = cls.env["test.queue.job"].create({"name": "counter"})

    def test_job_is_delayed_with_its_arguments(self):
        with trap_jobs() as trap:
            self.record.with_delay(priority=5).increment(step=2)

        trap.assert_jobs_count(1, only=self.record.increment)
        trap.assert_enqueued_job(
            self.record.increment,
            kwargs={"step": 2},
            properties={"priority": 5},
        )
        self.assertEqual(self.record.counter, 0, "a trapped job does not run")

    def test_graph_is_performed_in_dependency_order(self):
        with trap_jobs() as trap:
            chain(
                self.record.delayable().record_call("first"),
                group(
                    self.record.delayable().record_call("then a"),
                    self.record.delayable().record_call("then b"),
                ),
            ).delay()
            trap.assert_jobs_count(3)
            trap.perform_enqueued_jobs()

        self.assertEqual(
            self.record.log_ids.mapped("tag"), ["first", "then a", "then b"]
        )

    def test_job_method(self):
        # A job method is a method: test what it does by calling it.
        self.assertEqual(self.record.increment(step=3), [3])


@tagged("post_install", "-at_install")
class TestCounterJobsNoDelay(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Every job delayed with this environment runs at once.
        cls.env = cls.env(context=dict(cls.env.context, queue_job__no_delay=True))
        cls.record = cls.env["test.queue.job"].create({"name": "counter"})

    def test_job_runs_at_once(self):
        self.record.with_delay().increment(step=3)
        self.assertEqual(self.record.counter, 3)
# --- usage example: end ---


@tagged("post_install", "-at_install")
class TestUsageExampleInReadme(TransactionCase):
    def test_readme_shows_the_example_verbatim(self):
        source = Path(__file__).read_text()
        example = source.split("# --- usage example: start ---\n")[1]
        example = example.split("# --- usage example: end ---\n")[0].strip()
        with file_open("queue_job/readme/USAGE.md") as readme:
            blocks = re.findall(r"^```python\n(.*?)^```$", readme.read(), re.M | re.S)
        if example not in [block.strip() for block in blocks]:
            self.fail(
                "readme/USAGE.md must show the code between the 'usage example' "
                f"comments of {__file__} verbatim, in a ```python block: "
                "update the one that is behind"
            )
