"""The codemod's edits: libcst applies what the analysis planned, keeping every other byte.

Only this package imports libcst. It never decides where a call goes; it pairs the analysis'
ast statements with libcst nodes (:mod:`.cstmap`), inserts (:mod:`.patch`), removes an earlier
run's calls (:mod:`.revert`) and adds Trainer callbacks (:mod:`.trainer_callback`).
"""
