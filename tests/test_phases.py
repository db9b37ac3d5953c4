"""Expand and contract: `run --phase expand` stops before the first contract step, so the
application deploy goes between the two; `status` names the contract steps waiting."""

from tests.conftest import table_script, tbmigrate, write_script
from tests.schemas import document


def test_run_phase_expand_leaves_the_contract_steps_for_after_the_deploy(target, scripts_dir):
    table_script(scripts_dir, "1.0.0", "orders")
    write_script(
        scripts_dir,
        "1.0.1",
        "add-side",
        up="db.add_column('orders', 'side', 'VARCHAR(4)')",
        down="db.drop_column('orders', 'side')",
    )
    write_script(
        scripts_dir,
        "1.0.2",
        "drop-label",
        header='phase = "contract"',
        up="db.drop_column('orders', 'label')",
        down="db.add_column('orders', 'label', 'VARCHAR(50)')",
    )
    table_script(scripts_dir, "1.0.3", "later")
    expand = tbmigrate("run", "--phase", "expand", database=target)
    assert expand.code == 0, expand.err
    assert "Applied 2 migration(s)" in expand.out
    status = tbmigrate("status", database=target)
    line = next(line for line in status.out.splitlines() if line.startswith("1.0.2"))
    assert "pending" in line and "contract step" in line
    data = document(tbmigrate("status", "--json", database=target), "status")
    assert [m["phase"] for m in data["migrations"]] == ["expand", "expand", "contract", "expand"]
    assert tbmigrate("run", "--phase", "expand", database=target).out.count("Applying") == 0
    rest = tbmigrate("run", database=target)
    assert rest.code == 0 and "Applied 2 migration(s)" in rest.out
    bad = tbmigrate("run", "--phase", "sideways", database=target)
    assert bad.code != 0 and "invalid choice: 'sideways'" in bad.err
