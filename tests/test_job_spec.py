"""The job model's field table, as `schema jobs` and validation read it."""

from __future__ import annotations

import msgspec

from ocsched.domain.job_spec import JobSpec, flag_fields, job_fields, required_fields


def test_the_field_table_agrees_with_msgspecs_own_reading_of_the_struct():
    inspected = {f.name: f for f in msgspec.inspect.type_info(JobSpec).fields}
    for name, info in job_fields().items():
        kind = inspected[name].type
        if isinstance(kind, msgspec.inspect.UnionType):
            members = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
            assert info.nullable, name
            (kind,) = members
        else:
            assert not info.nullable, name
        if isinstance(kind, msgspec.inspect.LiteralType):
            assert sorted(info.enum, key=str) == sorted(kind.values, key=str), name
        if isinstance(kind, msgspec.inspect.IntType):
            assert (info.type, info.min) == ("integer", kind.ge), name
        if isinstance(kind, msgspec.inspect.StrType):
            assert info.maxLength == kind.max_length, name
        assert info.required == inspected[name].required, name


def test_enums_keep_the_order_the_spec_lists_them_in():
    assert job_fields()["schedule_kind"].enum == ["cron", "at"]
    assert job_fields()["delivery_mode"].enum == ["announce", "announce-always", "none"]


def test_required_and_flag_fields():
    assert required_fields() == ("name", "payload_message", "run_timeout_ms")
    assert flag_fields() == (
        "enabled",
        "execution_read_only",
        "delete_after_run",
        "approval_required",
        "watchdog_self_destruct",
    )
