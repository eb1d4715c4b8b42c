"""Writes the schema-1 study databases the migration tests open (run once, with the code of commit
b259a9d, the last one that wrote schema 1, first on the path):

    git archive b259a9d cbam_viz | tar -x -C /tmp/schema1
    PYTHONPATH=/tmp/schema1 .venv/bin/python tests/data/make_study_schema1.py tests/data

Outputs: study-schema1.sqlite3 (written by that code's `open_store`), study-schema1-postgresql.sql
(that code's tables compiled for PostgreSQL, then the same rows as INSERTs) and
study-schema1-votes.json (every vote as that code's `Store.votes` returned it, plus its unblinded
choice as a model role: the slot "baseline" stood for the first of the study's models, "cbam" for
the second).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from cbam_viz.study import DemoStimuli, StudyConfig, VoteMeta, open_store
from cbam_viz.study.schema import Base, SchemaVersion

out = Path(sys.argv[1])
db = out / "study-schema1.sqlite3"
db.unlink(missing_ok=True)
store = open_store(f"sqlite:///{db}")
studies = {"plain": StudyConfig(name="plain", pair="demo", stimuli=DemoStimuli(seed=5, count=8), trials_per_participant=4,
                                repeat_trial=True, collect_expertise=True),
           "se-cbam": StudyConfig(name="se-cbam", pair="imagenet", models=("se", "cbam"),
                                  stimuli=DemoStimuli(seed=6, count=6), trials_per_participant=3)}
answers = ["A", "B", "same", "A", "B"]
for name, config in studies.items():
    store.ensure_study(config)
    for p in range(2):
        pid = f"{name}-p{p}"
        store.get_or_create_participant(name, pid, "layperson" if config.collect_expertise else None)
        for i, trial in enumerate(store.trials(name, pid)):
            meta = VoteMeta(target_class=f"class{i}", baseline_pred=f"b{i}", baseline_prob=0.5 + i / 100,
                            cbam_pred=f"c{i}", cbam_prob=0.25 + i / 100, baseline_checksum="b" * 64,
                            cbam_checksum="c" * 64)
            store.record_vote(name, pid, trial.position, answers[(i + p) % len(answers)], response_ms=100 * i + p,
                              meta=meta)
store.record_free_vote("voter1", "ab" * 32, "B", "baseline", pair="demo", method="gradcam",
                       meta=VoteMeta(baseline_pred="x", baseline_prob=0.9, cbam_pred="y", cbam_prob=0.8))
store.record_free_vote("voter2", "cd" * 32, "A", "cbam", pair="demo", method="gradcam")

roles = {name: dict(zip(("baseline", "cbam"), config.models)) for name, config in studies.items()}
votes = []
for name in studies:
    for vote in store.votes(name):
        row = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in vote.__dict__.items()}
        row["chosen_role"] = roles[name].get(vote.chosen_model, vote.chosen_model)
        row["shown_as_a_role"] = roles[name][vote.shown_as_a]
        votes.append(row)
for vote in store.free_votes():
    row = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in vote.__dict__.items()}
    row["chosen_role"], row["shown_as_a_role"] = vote.chosen_model, vote.shown_as_a
    votes.append(row)
(out / "study-schema1-votes.json").write_text(json.dumps(votes, indent=1) + "\n")

lines = [str(CreateTable(t).compile(dialect=postgresql.dialect())).strip() + ";" for t in Base.metadata.sorted_tables]
with store.engine.connect() as conn:
    for table in Base.metadata.sorted_tables:
        for row in conn.execute(select(table).order_by(*table.primary_key.columns)).mappings():
            values = ", ".join("NULL" if v is None else repr(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                               else ("true" if v else "false") if isinstance(v, bool)
                               else "'" + str(v).replace("'", "''") + "'" for v in row.values())
            lines.append(f"INSERT INTO {table.name} ({', '.join(row.keys())}) VALUES ({values});")
    for table in Base.metadata.sorted_tables:
        if table is not SchemaVersion.__table__:
            lines.append(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), (SELECT max(id) FROM {table.name}));")
    assert conn.execute(text("SELECT version FROM cbam_viz_schema")).scalar() == 1
(out / "study-schema1-postgresql.sql").write_text("\n".join(lines) + "\n")
store.close()
print(f"wrote {db}, {len(votes)} votes")
