"""With automation on, a change in the customer 360 reaches the sandbox list by itself, and how fast.

In process, on a real (temporary) instance: observe the inputs, evaluate the automation conditions as the
automation sensor would, execute the runs they request, and repeat until the list holds the audience.
"""

import datetime
import time

import dagster as dg

from ac_pipeline.defs.activecampaign.assets import DRY_RUN_TAG
from ac_pipeline.defs.freshness.sources import AUDIENCES_YAML, CUSTOMER_360
from ac_pipeline_tests.fixtures.pipeline import QUIET, Pipeline

AUDIENCE = "vip_customers"
PUSH = dg.AssetKey("activecampaign_sync")
# Bounds on the loop: a change needs one observation and one run per audience; anything past these is a bug.
MAX_TICKS = 6
MAX_SECONDS = 30.0


class Automation:
    """The automation sensor's loop, by hand: observe, evaluate, run what was requested."""

    def __init__(self, pipeline: Pipeline, instance: dg.DagsterInstance) -> None:
        self.defs = pipeline.defs
        self.instance = instance
        self.cursor = None
        self.job = self.defs.resolve_implicit_global_asset_job_def()

    def observe(self) -> None:
        """What the automation sensor does on the cron of the sources' condition."""
        for key in (CUSTOMER_360, AUDIENCES_YAML):
            self.job.get_subset(asset_selection={key}).execute_in_process(instance=self.instance, run_config=QUIET)

    def tick(self) -> dict[str | None, set[dg.AssetKey]]:
        """Evaluate every condition once and execute what it requested for this test's audience: one run
        per partition, as the sensor launches them."""
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        runs: dict[str | None, set[dg.AssetKey]] = {}
        for key in self.defs.resolve_asset_graph().get_all_asset_keys():
            for partition in result.get_requested_partitions(key):
                runs.setdefault(partition, set()).add(key)
        for partition, keys in runs.items():
            if partition not in (None, AUDIENCE):
                continue
            outcome = self.job.get_subset(asset_selection=keys).execute_in_process(
                instance=self.instance, partition_key=partition, run_config=QUIET, raise_on_error=False
            )
            assert outcome.success, f"the run automation requested for {sorted(keys)} failed"
        return runs


def test_a_change_reaches_the_list_by_itself(pipeline: Pipeline, tmp_path) -> None:
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        automation = Automation(pipeline, instance)
        assert pipeline.sync(AUDIENCE, instance=instance).success  # the first sync, by hand
        automation.observe()
        automation.tick()  # the first evaluation only records where things stand
        before = pipeline.listed(AUDIENCE)

        started = time.perf_counter()
        pipeline.execute("UPDATE customers SET loyalty_tier = 'gold', email_consent = true WHERE customer_id <= 5")
        ticks = 0
        while True:
            ticks += 1
            automation.observe()
            automation.tick()
            if pipeline.listed(AUDIENCE) == pipeline.audience(AUDIENCE) != before:
                break
            assert ticks < MAX_TICKS and time.perf_counter() - started < MAX_SECONDS, "the change never arrived"
        elapsed = time.perf_counter() - started
        print(f"a customer 360 change reached the sandbox list in {elapsed:.2f} s ({ticks} ticks)")
        assert len(pipeline.listed(AUDIENCE) - before) > 0


def test_a_dry_run_never_leads_automation_to_push(pipeline: Pipeline, tmp_path) -> None:
    """A person's dry run materializes the changes and not the push: eager would push them; ours waits."""
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        automation = Automation(pipeline, instance)
        assert pipeline.sync(AUDIENCE, instance=instance).success
        automation.observe()
        automation.tick()
        pipeline.execute("UPDATE customers SET loyalty_tier = 'gold', email_consent = true WHERE customer_id <= 5")
        before = pipeline.listed(AUDIENCE)
        assert pipeline.sync(AUDIENCE, instance=instance, tags={DRY_RUN_TAG: "true"}).success
        assert PUSH not in automation.tick().get(AUDIENCE, set())
        assert pipeline.listed(AUDIENCE) == before


def test_editing_one_audience_syncs_that_audience_and_those_that_exclude_it(pipeline: Pipeline, tmp_path) -> None:
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        automation = Automation(pipeline, instance)
        for key in pipeline.defs.resources["audiences"].load().keys:
            assert pipeline.sync(key, instance=instance).success
        automation.observe()
        automation.tick()
        text = pipeline.home.audiences.read_text()
        pipeline.home.audiences.write_text(
            text.replace("loyalty_tier IN ('gold', 'platinum')", "loyalty_tier IN ('silver', 'gold', 'platinum')")
        )
        automation.observe()
        requested = automation.tick()
        # lapsed_buyers excludes vip_customers, so its members depend on vip's definition too.
        assert {p for p, keys in requested.items() if PUSH in keys} == {AUDIENCE, "lapsed_buyers"}
        assert pipeline.listed(AUDIENCE) == pipeline.audience(AUDIENCE)


def test_the_automation_sensor_observes_the_sources_on_their_cron(pipeline: Pipeline, tmp_path) -> None:
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        now = datetime.datetime.now(datetime.UTC)
        first = dg.evaluate_automation_conditions(defs=pipeline.defs, instance=instance, evaluation_time=now)
        later = dg.evaluate_automation_conditions(
            defs=pipeline.defs,
            instance=instance,
            cursor=first.cursor,
            evaluation_time=now + datetime.timedelta(minutes=3),
        )
        assert later.get_num_requested(CUSTOMER_360) == 1
        assert later.get_num_requested(AUDIENCES_YAML) == len(pipeline.defs.resources["audiences"].load().keys)


def test_automation_is_off_until_an_operator_turns_it_on(pipeline: Pipeline) -> None:
    sensor = pipeline.defs.resolve_sensor_def("audience_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
