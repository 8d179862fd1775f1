"""The actor layer: one ``ProjectSupervisor`` per project, owned by the ``SupervisorRegistry``.

Controllers and listeners never call into a supervisor: they ``tell`` it a message or ``ask``
one and await the reply. Only a supervisor's own loop changes its project's container and
sessions.
"""
