# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""OCA's core API as other addons use it: Job, identity_exact, the edit
sentinel, _patch_job_auto_delay, _job_store_values, JobSerialized, utils."""

import json
from datetime import date, datetime, timedelta
from unittest import mock

from odoo import exceptions, fields
from odoo.tests import tagged

from odoo.addons.queue_job import identity_exact as root_identity_exact
from odoo.addons.queue_job import job as job_module
from odoo.addons.queue_job import utils
from odoo.addons.queue_job.delay import group
from odoo.addons.queue_job.fields import JobDecoder, JobEncoder
from odoo.addons.queue_job.exception import (
    FailedJobError,
    NoSuchJobError,
    RetryableJobError,
)
from odoo.addons.queue_job.job import (
    CANCELLED,
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    DONE,
    ENQUEUED,
    FAILED,
    PENDING,
    RETRY_INTERVAL,
    STARTED,
    WAIT_DEPENDENCIES,
    Job,
    identity_exact,
    identity_exact_hasher,
)

from .job_runner_case import JobRunnerCase

# identity_exact of the job built in test_identity_exact_is_ocas_hash, as
# computed by OCA queue_job 19.0.2.4's own identity_exact.
OCA_IDENTITY_EXACT = "d202de38e23f145138e4c67d332137940c73ad8d"


@tagged("post_install", "-at_install")
class TestOcaJobApi(JobRunnerCase):
    def sentinel(self, records):
        return records.with_context(_job_edit_sentinel=self.Job.EDIT_SENTINEL)

    def stored_group(self):
        """group(a, b).on_done(c), stored; returns the three Jobs."""
        a, b, c = (self.record.delayable().record_call(tag) for tag in "abc")
        group(a, b).on_done(c).delay()
        return a._generated_job, b._generated_job, c._generated_job

    # -- names and constants ------------------------------------------------

    def test_constants_have_ocas_values(self):
        self.assertEqual((DEFAULT_PRIORITY, DEFAULT_MAX_RETRIES, RETRY_INTERVAL), (10, 5, 600))
        self.assertEqual(
            (WAIT_DEPENDENCIES, PENDING, ENQUEUED, STARTED, DONE, CANCELLED, FAILED),
            ("wait_dependencies", "pending", "enqueued", "started", "done", "cancelled", "failed"),
        )

    def test_identity_exact_is_ocas_hash(self):
        records = self.env["test.queue.job"].browse([3, 1])
        job_ = Job(
            records.echo,
            args=(1, "foo", {"a": [1, 2]}),
            kwargs={"n": 2, "bar": "baz"},
            identity_key=identity_exact,
        )
        self.assertIs(root_identity_exact, identity_exact)
        self.assertEqual(job_.identity_key, OCA_IDENTITY_EXACT)
        self.assertEqual(identity_exact_hasher(job_).hexdigest(), OCA_IDENTITY_EXACT)
        job_.store()
        self.assertEqual(self.job_of(job_).identity_key, OCA_IDENTITY_EXACT)

    def test_must_run_without_delay_lives_in_utils(self):
        self.assertIs(job_module.must_run_without_delay, utils.must_run_without_delay)
        self.assertTrue(utils.must_run_without_delay(self.env(context={"queue_job__no_delay": 1})))
        self.assertFalse(utils.must_run_without_delay(self.env))

    # -- building a Job -----------------------------------------------------

    def test_constructor_checks_and_defaults(self):
        with self.assertRaises(TypeError):
            Job(1)
        with self.assertRaises(TypeError):
            Job(self.record.echo, args="ab")
        job_ = Job(self.record.echo, args=[1, 2], job_uuid="0000-uuid")
        self.assertEqual((job_.uuid, job_.args, job_.kwargs), ("0000-uuid", (1, 2), {}))
        self.assertEqual(
            job_.description, "Return the arguments as received, for round-trip checks."
        )
        self.assertEqual(Job(self.record.increment).description, "test.queue.job.increment")
        self.assertEqual(job_.user_id, self.env.uid)
        self.assertEqual(job_.company_id, self.env.company.id)
        self.assertIsNone(Job(self.record.with_context(company_id=None).echo).company_id)
        self.assertEqual(job_.job_function_name, "<test.queue.job>.echo")
        self.assertEqual(job_.func.__self__.env.context["job_uuid"], "0000-uuid")

    def test_eta_from_seconds_with_patched_datetime(self):
        with mock.patch.object(job_module, "datetime", autospec=True) as patched:
            patched.now.return_value = datetime(2015, 3, 15, 16, 41, 0)
            self.assertEqual(Job(self.record.echo, eta=60).eta, datetime(2015, 3, 15, 16, 42))
            job_ = Job(self.record.echo, eta=datetime(2020, 1, 1))
            self.assertEqual(job_.eta, datetime(2020, 1, 1))
            job_.postpone(result="later", seconds=30)
            self.assertEqual(job_.eta, datetime(2015, 3, 15, 16, 41, 30))
            self.assertEqual(job_.result, "later")

    def test_set_methods_change_the_job_in_memory(self):
        job_ = Job(self.record.echo)
        job_.set_enqueued()
        self.assertEqual(job_.state, ENQUEUED)
        job_.set_started()
        self.assertTrue(job_.date_started and job_.worker_pid)
        job_.date_started = datetime(2020, 1, 1, 0, 0, 0)
        job_.set_done(result="ok")
        self.assertEqual((job_.state, job_.result), (DONE, "ok"))
        job_.date_done = datetime(2020, 1, 1, 0, 1, 0)
        self.assertEqual(job_.exec_time, 60.0)
        job_.set_failed(exc_name="E", exc_message="bad", exc_info=None)
        self.assertEqual((job_.state, job_.exc_name, job_.exc_message), (FAILED, "E", "bad"))
        job_.set_cancelled(result="no")
        self.assertEqual((job_.state, job_.result), (CANCELLED, "no"))
        job_.retry = 3
        job_.set_pending(reset_retry=False)
        self.assertEqual((job_.state, job_.retry, job_.date_done), (PENDING, 3, None))
        job_.set_pending()
        self.assertEqual(job_.retry, 0)

    def test_add_depends(self):
        root, child = Job(self.record.echo), Job(self.record.echo)
        child.add_depends({root})
        self.assertEqual((child.state, child.depends_on, root.reverse_depends_on),
                         (WAIT_DEPENDENCIES, {root}, {child}))
        with self.assertRaises(ValueError):
            child.add_depends({child})

    # -- perform ------------------------------------------------------------

    def test_perform_counts_tries_and_fails_when_out_of_tries(self):
        job_ = Job(self.record.retry_later, args=("again",), max_retries=2)
        with self.assertRaises(RetryableJobError):
            job_.perform()
        self.assertEqual(job_.retry, 1)
        with self.assertRaises(FailedJobError):
            job_.perform()
        self.assertEqual(job_.retry, 2)
        ignored = Job(self.record.retry_later, kwargs={"ignore_retry": True}, max_retries=1)
        with self.assertRaises(RetryableJobError):
            ignored.perform()
        self.assertEqual(ignored.retry, 0, "ignore_retry gives the try back")
        done = Job(self.record.echo, args=(1,))
        self.assertEqual(done.perform(), ((1,), {}))
        self.assertEqual(done.result, ((1,), {}))

    def test_the_runner_executes_jobs_with_perform(self):
        job = self.job_of(self.record.with_delay().increment(2))
        with mock.patch.object(Job, "perform", autospec=True, side_effect=Job.perform) as perform:
            self.run_job(job)
        perform.assert_called_once()
        self.assertEqual((job.state, job.retry, self.record.counter), (DONE, 1, 2))

    # -- load, store --------------------------------------------------------

    def test_store_then_load(self):
        eta = fields.Datetime.now() + timedelta(hours=1)
        job_ = Job(self.record.echo, args=("o", "k"), kwargs={"c": "!"}, priority=15,
                   eta=eta, description="My description")
        job_.store()
        self.assertTrue(job_.id)
        loaded = Job.load(self.env, job_.uuid)
        for name in ("uuid", "model_name", "method_name", "args", "kwargs", "description",
                     "state", "priority", "eta", "user_id", "company_id", "channel"):
            self.assertEqual(getattr(loaded, name), getattr(job_, name), name)
        self.assertEqual(loaded, job_)
        self.assertEqual(Job.load_many(self.env, [job_.uuid, "no-such-uuid"]), {job_})
        self.assertEqual(Job.db_records_from_uuids(self.env, [job_.uuid]), self.job_of(job_))
        self.assertEqual(loaded.db_record(), self.job_of(job_))
        with self.assertRaises(NoSuchJobError):
            Job.load(self.env, "no-such-uuid")

    def test_load_keeps_the_loading_context_under_the_stored_one(self):
        # As OCA's JobDecoder: connector_importer's tests load a job in an
        # environment that carries their component registry.
        job_ = self.record.with_context(lang="en_US").with_delay().echo("x")
        loaded = Job.load(self.env(context={"components_registry": "reg", "lang": "fr_FR"}),
                          job_.uuid)
        context = loaded.recordset.env.context
        self.assertEqual(context["components_registry"], "reg")
        self.assertEqual(context["lang"], "en_US", "the stored context wins")

    def test_store_dependent_after_its_dependency(self):
        root, child = Job(self.record.echo), Job(self.record.echo)
        child.add_depends({root})
        with self.assertRaises(ValueError):
            child.store()
        root.store()
        child.store()
        self.assertTrue(root.graph_uuid)
        self.assertEqual(child.graph_uuid, root.graph_uuid)
        record = self.job_of(child)
        self.assertEqual((record.state, record.pending_dependency_count), (WAIT_DEPENDENCIES, 1))
        self.assertEqual(record.dependency_job_ids, self.job_of(root))
        self.assertEqual(Job.load(self.env, child.uuid).depends_on, {root})
        self.run_job(self.job_of(root))  # the runner releases jobs of a graph
        self.assertEqual((record.state, record.pending_dependency_count), (PENDING, 0))

    def test_store_after_a_done_dependency(self):
        root = Job(self.record.echo)
        root.store()
        root.set_done()
        root.store()
        child = Job(self.record.echo)
        child.add_depends({root})
        child.store()
        record = self.job_of(child)
        self.assertEqual((record.state, record.pending_dependency_count), (PENDING, 0))
        self.assertEqual(child.state, PENDING)

    def test_store_done_releases_like_set_done(self):
        a, b, c = self.stored_group()
        callback = self.job_of(c)
        member = Job.load(self.env, a.uuid)
        member.set_done(result="by hand")
        member.store()
        self.assertEqual((self.job_of(a).state, self.job_of(a).result), (DONE, "by hand"))
        self.assertEqual((callback.state, callback.pending_dependency_count),
                         (WAIT_DEPENDENCIES, 1))
        member.store()  # storing again releases nothing twice
        self.assertEqual(callback.pending_dependency_count, 1)
        other = Job.load(self.env, b.uuid)
        other.set_done()
        other.store()
        self.assertEqual((callback.state, callback.pending_dependency_count), (PENDING, 0))

    def test_fields_computed_from_a_job_follow_its_state(self):
        job_ = self.record.with_delay().echo("x")
        self.record.job_id = self.job_of(job_)
        self.assertEqual(self.record.job_state, PENDING)  # now in the cache
        loaded = Job.load(self.env, job_.uuid)
        loaded.set_done()
        loaded.store()
        self.assertEqual(self.record.job_state, DONE)
        self.job_of(job_).requeue()
        self.assertEqual(self.record.job_state, PENDING)

    def test_store_failed_and_cancelled_cascade(self):
        a, _b, c = self.stored_group()
        member = Job.load(self.env, a.uuid)
        member.set_failed(exc_name="MyError", exc_message="broken")
        member.store()
        self.assertEqual((self.job_of(a).state, self.job_of(a).exc_message), (FAILED, "broken"))
        self.assertEqual((self.job_of(c).state, self.job_of(c).exc_name),
                         (FAILED, "DependencyFailed"))
        self.assertTrue(self.job_of(a).message_ids, "the failure is notified")
        member.set_pending()
        member.store()
        self.assertEqual((self.job_of(a).state, self.job_of(c).state),
                         (PENDING, WAIT_DEPENDENCIES))
        member.set_cancelled()
        member.store()
        self.assertEqual((self.job_of(a).state, self.job_of(c).state), (CANCELLED, CANCELLED))
        self.assertTrue(self.job_of(a).date_done, "the autovacuum's date is kept")

    def test_store_started_then_postponed(self):
        job_ = Job.load(self.env, self.record.with_delay(max_retries=3).retry_later("x").uuid)
        job_.set_started()
        job_.store()
        self.assertEqual(self.job_of(job_).state, STARTED)
        with self.assertRaises(RetryableJobError):
            job_.perform()
        job_.postpone(seconds=60)
        job_.set_pending(reset_retry=False)
        job_.store()
        record = self.job_of(job_)
        self.assertEqual((record.state, record.retry), (PENDING, 1))
        self.assertGreater(record.eta, fields.Datetime.now() + timedelta(seconds=50))

    def test_store_writes_priority_and_dates(self):
        job_ = Job.load(self.env, self.record.with_delay().echo().uuid)
        job_.priority = 3
        job_.date_enqueued = datetime(2015, 3, 15, 21, 7)
        job_.store()
        record = self.job_of(job_)
        self.assertEqual((record.priority, record.date_enqueued), (3, datetime(2015, 3, 15, 21, 7)))

    def test_job_record_with_same_identity_key_and_related_action(self):
        job_ = self.record.with_delay(identity_key="key-1").echo()
        probe = Job(self.record.echo, identity_key="key-1")
        self.assertEqual(probe.job_record_with_same_identity_key(), self.job_of(job_))
        action = Job.load(self.env, job_.uuid).related_action()
        self.assertEqual(
            (action["res_model"], action["res_id"]), ("test.queue.job", self.record.id)
        )

    # -- the edit sentinel --------------------------------------------------

    def test_create_and_write_need_the_sentinel(self):
        vals = {
            "uuid": "created-by-hand",
            "state": PENDING,
            "name": "by hand",
            "model_name": "test.queue.job",
            "method_name": "echo",
        }
        with self.assertRaises(exceptions.AccessError):
            self.Job.create(vals)
        created = self.Job.browse(self.sentinel(self.Job).create(vals).id)
        self.assertEqual(created.state, PENDING)
        with self.assertRaises(exceptions.AccessError):
            created.write({"method_name": "other"})
        self.sentinel(created).write({"method_name": "other"})
        self.assertEqual(created.method_name, "other")
        with self.assertRaises(exceptions.AccessError):
            self.sentinel(created).write({"pending_dependency_count": 3})
        with self.assertRaises(exceptions.AccessError):
            # what an RPC call can pass: a value that is not the object
            created.with_context(_job_edit_sentinel=repr(self.Job.EDIT_SENTINEL)).write(
                {"method_name": "third"}
            )
        with self.assertRaises(exceptions.AccessError):
            created.with_context(_job_edit_sentinel=repr(self.Job.EDIT_SENTINEL)).create(vals)

    def test_sentinel_write_of_state_goes_through_the_transitions(self):
        a, b, c = self.stored_group()
        callback = self.job_of(c)
        self.sentinel(self.job_of(a)).write({"state": DONE})
        self.assertEqual((callback.state, callback.pending_dependency_count),
                         (WAIT_DEPENDENCIES, 1))
        self.assertTrue(self.job_of(a).date_done)
        self.sentinel(self.job_of(b)).write({"state": DONE})
        self.assertEqual((callback.state, callback.pending_dependency_count), (PENDING, 0))
        with self.assertRaises(exceptions.UserError):
            self.sentinel(self.job_of(a)).write({"state": FAILED})  # done stays done
        with self.assertRaises(exceptions.UserError):
            self.sentinel(callback).write({"state": ENQUEUED})

    # -- _patch_job_auto_delay ----------------------------------------------

    def test_auto_delay(self):
        Model = self.env["test.queue.job"]
        delayed = Model.delay_me(1, kwarg=2)
        self.assertIsInstance(delayed, Job)
        self.assertEqual((delayed.args, delayed.kwargs), ((1,), {"kwarg": 2}))
        self.assertEqual(delayed.perform(), (1, 2), "inside the job, the method runs")
        options = Model.delay_me_options()
        self.assertEqual((options.identity_key, options.priority), ("my_job_identity", 3))
        self.assertEqual(Model.delay_me_context_key(), "ok")
        keyed = Model.with_context(auto_delay_delay_me_context_key=True).delay_me_context_key()
        self.assertIsInstance(keyed, Job)
        self.assertEqual(Model.with_context(queue_job__no_delay=True).delay_me(1), (1, None))
        self.assertEqual(Model.delay_me.origin.__name__, "delay_me")

    # -- _job_store_values --------------------------------------------------

    def test_job_store_values_are_stored(self):
        a, b, _c = self.stored_group()
        self.assertEqual(self.job_of(a).additional_info, "record_call pending")
        self.assertEqual(self.job_of(_c).additional_info, "record_call wait_dependencies")
        echo = self.record.with_delay().echo(1, 2)
        self.assertEqual(self.job_of(echo).additional_info, "echo of 2 argument(s)")
        member = Job.load(self.env, b.uuid)
        member.set_failed(exc_message="x")
        member.store()
        self.assertEqual(self.job_of(b).additional_info, "record_call failed")

    def test_job_store_values_of_an_unknown_field_raise(self):
        with mock.patch.object(
            type(self.record), "_job_store_values", lambda self, job: {"no_such_field": 1}
        ):
            with self.assertRaises(ValueError):
                self.record.with_delay().echo()

    def test_job_store_values_cannot_override_the_jobs_own(self):
        with mock.patch.object(
            type(self.record), "_job_store_values", lambda self, job: {"priority": 99}
        ):
            job_ = self.record.with_delay(priority=4).increment()
        self.assertEqual(self.job_of(job_).priority, 4)

    # -- JobSerialized ------------------------------------------------------

    def test_job_serialized_keeps_records_and_dates(self):
        partner = self.env.user.partner_id
        value = {"partner": partner, "when": datetime(2020, 1, 2, 3, 4, 5),
                 "day": date(2020, 1, 2), "n": [1, "x"]}
        self.record.serialized = value
        self.record.serialized_records = partner
        self.env.flush_all()
        self.env.invalidate_all()
        self.assertEqual(self.record.serialized, value)
        self.assertEqual(self.record.serialized_records, partner)
        self.env.cr.execute("SELECT serialized->'partner'->>'_type' FROM test_queue_job "
                            "WHERE id = %s", (self.record.id,))
        self.assertEqual(self.env.cr.fetchone()[0], "odoo_recordset")
        empty = self.env["test.queue.job"].create({"name": "empty"})
        self.assertEqual(empty.serialized, {})
        self.assertEqual(empty.serialized_records._name, "base")
        self.assertFalse(empty.serialized_records)

    def test_job_encoder_and_decoder(self):
        partner = self.env.user.partner_id
        value = {
            "partners": [partner],
            "when": datetime(2020, 1, 2, 3, 4, 5),
            "day": date(2020, 1, 2),
        }
        text = json.dumps(value, cls=JobEncoder)
        self.assertEqual(
            json.loads(text)["day"], {"_type": "date_isoformat", "value": "2020-01-02"}
        )
        self.assertEqual(json.loads(text, cls=JobDecoder, env=self.env), value)
        with self.assertRaises(TypeError):
            json.dumps({"x": object()}, cls=JobEncoder)
        forged = {"_type": "odoo_recordset", "model": "res.users", "ids": [1], "uid": 1}
        text = json.dumps({"forged": forged, "list": [{"_type": "dict", "value": 1}]},
                          cls=JobEncoder)
        self.assertEqual(
            json.loads(text, cls=JobDecoder, env=self.env),
            {"forged": forged, "list": [{"_type": "dict", "value": 1}]},
        )
        self.record.serialized = {"forged": forged}
        self.env.flush_all()
        self.env.invalidate_all()
        self.assertEqual(self.record.serialized, {"forged": forged})

