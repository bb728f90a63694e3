"""Reports of a session's audit records: the terminal summary (`terminal`, `tables`), run files
and baselines (`run_files`, `entries`, `compare`, `baseline`, `gate_messages`), ``--psa-json``
(`json_report`), figures (`plots`, `html`) and the pytest hooks that write them (`outputs`).

Everything here reads `pytest_psa._records.AuditRecord`s, never result objects or measurement
internals, and imports no torch. The public entry points are the plugin's options and the
``psa`` command; these modules are internal.
"""

__all__: list[str] = []
