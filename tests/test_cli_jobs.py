"""The jobs commands as a user runs them: the real CLI (in process) on a real SQLite file."""

from __future__ import annotations

import json

import pytest

from .conftest import shell_job


def test_an_added_job_is_listed_by_the_next_command_without_a_daemon(scheduler):
    job = scheduler.add(shell_job(name="nightly backup"))
    listed = scheduler.ok("jobs", "list", "--json").json
    assert [j["id"] for j in listed] == [job["id"]]
    assert listed[0]["name"] == "nightly backup"


def test_add_prints_the_created_job_in_plain_mode(scheduler):
    result = scheduler.ok("jobs", "add", json.dumps(shell_job()))
    assert result.stdout.startswith("Created: {")
    record = json.loads(result.stdout[len("Created: ") :])
    assert record["name"] == "backup"
    assert record["payload_kind"] == "shellCommand"


def test_add_applies_the_defaults_of_the_job_model(scheduler):
    job = scheduler.add(shell_job())
    assert job["enabled"] == 1
    assert job["schedule_tz"] == "UTC"
    assert job["overlap_policy"] == "skip"
    assert job["output_excerpt_limit_bytes"] == 2000
    assert job["output_summary_limit_bytes"] == 5000
    assert job["delivery_guarantee"] == "at-most-once"
    assert job["consecutive_errors"] == 0
    assert job["created_at"] == job["updated_at"]


def test_a_cron_job_shows_its_next_fire_time_in_get_and_list(scheduler):
    job = scheduler.add(shell_job(schedule_cron="0 3 * * *"))
    assert job["next_run_at"].endswith(" 03:00:00")
    assert scheduler.ok("jobs", "get", job["id"]).json["next_run_at"] == job["next_run_at"]
    table = scheduler.ok("jobs", "list").stdout
    assert job["next_run_at"][:16] in table


def test_the_next_fire_time_honours_the_job_time_zone(scheduler):
    job = scheduler.add(shell_job(schedule_cron="0 9 * * *", schedule_tz="Asia/Tokyo"))
    assert job["next_run_at"].endswith(" 00:00:00")


def test_json_may_appear_anywhere_on_the_line(scheduler):
    job = scheduler.add(shell_job())
    assert scheduler.ok("jobs", "get", job["id"], "--json").json["id"] == job["id"]
    assert scheduler.ok("jobs", "list", "--json").json[0]["id"] == job["id"]


def test_a_job_spec_may_bring_its_own_id(scheduler):
    job = scheduler.add(shell_job(id="my-backup"))
    assert job["id"] == "my-backup"
    again = scheduler.run("jobs", "add", json.dumps(shell_job(id="my-backup")))
    assert again.returncode == 1
    assert again.stderr.strip() == "Job id already used: my-backup"


def test_get_of_an_unknown_id_is_an_error_not_undefined(scheduler):
    scheduler.add(shell_job())
    result = scheduler.run("jobs", "get", "nope")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "Job not found: nope\n")
    as_json = scheduler.run("jobs", "get", "nope", "--json")
    assert as_json.returncode == 1
    assert as_json.json == {"ok": False, "error": "Job not found: nope"}
    assert as_json.stderr == ""


@pytest.mark.parametrize("verb", ["enable", "disable", "delete"])
def test_switching_or_deleting_an_unknown_job_fails_and_records_nothing(scheduler, verb):
    scheduler.add(shell_job())
    before = scheduler.event_count()
    result = scheduler.run("jobs", verb, "nope")
    assert result.returncode == 1
    assert result.stderr.strip() == "Job not found: nope"
    assert scheduler.event_count() == before


def test_disable_and_enable_print_their_outcome(scheduler):
    job = scheduler.add(shell_job())
    assert scheduler.ok("jobs", "disable", job["id"]).stdout == "Disabled\n"
    assert scheduler.ok("jobs", "get", job["id"]).json["enabled"] == 0
    as_json = scheduler.ok("--json", "jobs", "enable", job["id"]).json
    assert as_json == {"ok": True, "job_id": job["id"], "enabled": True}
    assert scheduler.ok("jobs", "get", job["id"]).json["enabled"] == 1


def test_enabling_an_enabled_job_records_no_event(scheduler):
    job = scheduler.add(shell_job())
    before = scheduler.event_count()
    scheduler.ok("jobs", "enable", job["id"])
    assert scheduler.event_count() == before


def test_a_deleted_job_is_gone_from_get_and_list(scheduler):
    job = scheduler.add(shell_job())
    assert scheduler.ok("jobs", "delete", job["id"]).stdout == "Deleted\n"
    assert scheduler.run("jobs", "get", job["id"]).returncode == 1
    assert scheduler.ok("--json", "jobs", "list").json == []
    again = scheduler.run("--json", "jobs", "delete", job["id"])
    assert again.json == {"ok": False, "error": f"Job not found: {job['id']}"}


def test_delete_prints_json_when_asked(scheduler):
    job = scheduler.add(shell_job())
    result = scheduler.ok("--json", "jobs", "delete", job["id"]).json
    assert result == {"ok": True, "job_id": job["id"], "deleted": True}


def test_update_changes_only_the_given_fields(scheduler):
    job = scheduler.add(shell_job())
    result = scheduler.ok("--json", "jobs", "update", job["id"], '{"name": "renamed"}').json
    assert result["ok"] is True
    assert result["job"]["name"] == "renamed"
    assert result["job"]["payload_message"] == "echo hi"
    plain = scheduler.ok("jobs", "update", job["id"], '{"max_retries": 2}')
    assert plain.stdout.startswith("Updated: {")


def test_update_of_the_cron_moves_the_next_fire_time(scheduler):
    job = scheduler.add(shell_job(schedule_cron="0 3 * * *"))
    updated = scheduler.ok("--json", "jobs", "update", job["id"], '{"schedule_cron": "30 4 * * *"}')
    assert updated.json["job"]["next_run_at"].endswith(" 04:30:00")


def test_update_dry_run_validates_without_saving(scheduler):
    job = scheduler.add(shell_job())
    before = scheduler.event_count()
    result = scheduler.ok("--json", "jobs", "update", job["id"], '{"name": " x "}', "--dry-run")
    assert result.json["dry_run"] is True and result.json["valid"] is True
    assert scheduler.event_count() == before
    assert scheduler.ok("jobs", "get", job["id"]).json["name"] == "backup"


def test_update_of_an_unknown_job_fails(scheduler):
    result = scheduler.run("jobs", "update", "nope", '{"name": "x"}')
    assert (result.returncode, result.stderr.strip()) == (1, "Job not found: nope")


def test_update_with_bad_json_names_the_usage(scheduler):
    job = scheduler.add(shell_job())
    result = scheduler.run("jobs", "update", job["id"], "{nope")
    assert result.returncode == 1
    assert result.stderr.strip() == 'Invalid JSON. Usage: jobs update <id> \'{"key":"value"}\''


def test_add_dry_run_prints_the_normalized_spec_and_saves_nothing(scheduler):
    result = scheduler.ok("--json", "jobs", "add", json.dumps(shell_job(enabled=True)), "--dry-run")
    assert result.json["ok"] and result.json["dry_run"] and result.json["valid"]
    assert result.json["normalized"]["enabled"] == 1
    assert scheduler.event_count() == 0


def test_validate_echoes_the_normalized_spec(scheduler):
    result = scheduler.ok("--json", "jobs", "validate", json.dumps(shell_job(delivery_to="  ")))
    assert result.json["valid"] is True
    assert result.json["normalized"]["delivery_to"] is None
    assert scheduler.ok("jobs", "validate", json.dumps(shell_job())).stdout.startswith("Valid: ")


def test_in_makes_a_one_shot_job_that_deletes_itself(scheduler):
    job = scheduler.add(shell_job(schedule_cron=None), "--in", "15m")
    assert job["schedule_kind"] == "at"
    assert job["delete_after_run"] == 1
    assert job["schedule_cron"] == "0 0 31 2 *"
    assert job["next_run_at"] == job["schedule_at"]


def test_at_takes_an_iso_datetime_with_offset_and_stores_utc(scheduler):
    job = scheduler.add(shell_job(), "--at", "2030-01-02T10:00:00+02:00")
    assert job["schedule_at"] == "2030-01-02 08:00:00"
    assert job["next_run_at"] == "2030-01-02 08:00:00"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (
            "--in",
            "soon",
            '--at/--in error: Invalid --in duration: "soon". Use e.g. 15m, 2h, 30s, 1d',
        ),
        ("--at", "tomorrow", '--at/--in error: Invalid datetime: "tomorrow"'),
    ],
)
def test_a_bad_at_or_in_value_is_a_clear_error(scheduler, flag, value, message):
    result = scheduler.run("jobs", "add", json.dumps(shell_job()), flag, value)
    assert (result.returncode, result.stderr.strip()) == (1, message)
    assert scheduler.event_count() == 0


def test_profile_sets_the_auth_profile(scheduler):
    job = scheduler.add(shell_job(), "--profile", "anthropic:work")
    assert job["auth_profile"] == "anthropic:work"


def test_list_filters_by_job_type(scheduler):
    scheduler.add(shell_job(name="plain"))
    scheduler.add(
        shell_job(name="watch", job_type="watchdog", watchdog_check_cmd="true"), "--watchdog"
    )
    names = [j["name"] for j in scheduler.ok("--json", "jobs", "list", "--type", "watchdog").json]
    assert names == ["watch"]
    standard = scheduler.ok("--json", "jobs", "list", "--type", "standard").json
    assert [j["name"] for j in standard] == ["plain"]


def test_list_is_ordered_by_name_and_fits_80_columns(scheduler):
    scheduler.add(shell_job(name="zeta " + "x" * 60))
    scheduler.add(shell_job(name="alpha"))
    lines = scheduler.ok("jobs", "list", env={"COLUMNS": "80"}).stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "NAME"]
    assert "alpha" in lines[2] and "zeta" in lines[3]
    assert all(len(line) <= 80 for line in lines)


def test_tree_shows_children_under_their_parents(scheduler):
    parent = scheduler.add(shell_job(name="build"))
    child = scheduler.add(
        shell_job(
            name="deploy",
            parent_id=parent["id"],
            trigger_on="success",
            trigger_delay_s=30,
            schedule_cron=None,
            origin=None,
        )
    )
    scheduler.add(
        shell_job(
            name="notify",
            parent_id=child["id"],
            trigger_on="failure",
            schedule_cron=None,
            origin=None,
        )
    )
    plain = scheduler.ok("jobs", "tree").stdout.splitlines()
    assert plain == [
        "[on] build (main)",
        "  |- [on] deploy (main) [on:success] (+30s)",
        "  |-   |- [on] notify (main) [on:failure]",
    ]
    tree = scheduler.ok("--json", "jobs", "tree").json
    assert tree[0]["name"] == "build" and tree[0]["enabled"] is True
    assert tree[0]["children"][0]["children"][0]["name"] == "notify"
    assert set(tree[0]) == {
        "id",
        "name",
        "enabled",
        "agent_id",
        "trigger_on",
        "trigger_delay_s",
        "children",
    }


def test_a_child_needs_an_existing_parent(scheduler):
    spec = shell_job(parent_id="ghost", trigger_on="success", schedule_cron=None)
    result = scheduler.run("jobs", "add", json.dumps(spec))
    assert (result.returncode, result.stderr.strip()) == (1, "parent job does not exist: ghost")
    assert scheduler.event_count() == 0


def test_a_chain_deeper_than_ten_is_refused(scheduler):
    parent = scheduler.add(shell_job(name="level 0"))
    for level in range(1, 11):
        parent = scheduler.add(
            shell_job(
                name=f"level {level}",
                parent_id=parent["id"],
                trigger_on="success",
                schedule_cron=None,
            )
        )
    spec = shell_job(
        name="level 11", parent_id=parent["id"], trigger_on="success", schedule_cron=None
    )
    result = scheduler.run("jobs", "add", json.dumps(spec))
    assert result.returncode == 1
    assert result.stderr.strip() == "Max chain depth (10) exceeded. Chain would be 11 deep."


def test_making_a_job_its_own_ancestor_is_refused(scheduler):
    root = scheduler.add(shell_job(name="root"))
    child = scheduler.add(
        shell_job(name="child", parent_id=root["id"], trigger_on="success", schedule_cron=None)
    )
    before = scheduler.event_count()
    patch = json.dumps({"parent_id": child["id"], "trigger_on": "success"})
    result = scheduler.run("jobs", "update", root["id"], patch)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Cycle detected: job {root['id']} -> {child['id']} would create a loop"
    )
    assert scheduler.event_count() == before


def test_a_child_made_root_is_told_of_its_trigger_on_before_its_origin(scheduler):
    # The anchor's order (spec §3.2): setting parent_id touches the trigger fields (rule 9),
    # which come before the origin (rule 21).
    root = scheduler.add(shell_job(name="root"))
    child = scheduler.add(
        shell_job(name="child", parent_id=root["id"], trigger_on="success", schedule_cron=None)
    )
    before = scheduler.event_count()
    result = scheduler.run("jobs", "update", child["id"], '{"parent_id": null}')
    assert (result.returncode, result.stderr.strip()) == (1, "trigger_on is a child-only field")
    result = scheduler.run("--json", "jobs", "update", child["id"], '{"parent_id": null}')
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"ok": False, "error": "trigger_on is a child-only field"}
    assert scheduler.event_count() == before


def test_unknown_command_and_usage(scheduler):
    result = scheduler.run("frobnicate")
    assert result.returncode == 2  # a usage error (the anchor: 1)
    assert result.stderr.strip() == "Unknown command: frobnicate. Run without arguments for usage."
    assert scheduler.ok().stdout.startswith("Usage: ocsched")
    assert scheduler.ok("help").stdout.startswith("Usage: ocsched")
    assert scheduler.ok("version").stdout == "ocsched 0.1.0\n"


def test_add_without_json_prints_its_usage(scheduler):
    result = scheduler.run("jobs", "add")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Usage: jobs add <json> [--dry-run]")


def test_the_database_is_private_to_its_owner(scheduler):
    scheduler.add(shell_job())
    assert scheduler.db_path.stat().st_mode & 0o777 == 0o600
    assert scheduler.home.stat().st_mode & 0o777 == 0o700


def test_scheduler_db_overrides_the_location(scheduler, tmp_path):
    elsewhere = tmp_path / "custom" / "jobs.db"
    result = scheduler.run(
        "--json", "jobs", "add", json.dumps(shell_job()), env={"SCHEDULER_DB": str(elsewhere)}
    )
    assert result.returncode == 0, result.stderr
    assert elsewhere.exists()
    assert not scheduler.db_path.exists()


def test_a_change_racing_another_is_refused_and_saves_nothing(scheduler, monkeypatch):
    from ocsched.commands.context import ConcurrentChange, Context
    from ocsched.commands.jobs import _load_job, update_job

    job = scheduler.add(shell_job())
    monkeypatch.setenv("SCHEDULER_HOME", str(scheduler.home))
    first, second = Context(), Context()
    try:
        stale = _load_job(first, job["id"])  # loaded, then someone else changes the job
        update_job(second, job["id"], {"name": "renamed elsewhere"})
        stale.update({"name": "renamed here"}, first.meta(), first.now)
        before = scheduler.event_count()
        with pytest.raises(ConcurrentChange):
            first.save(stale)
        assert scheduler.event_count() == before
        assert scheduler.ok("jobs", "get", job["id"]).json["name"] == "renamed elsewhere"
    finally:
        first.close()
        second.close()
