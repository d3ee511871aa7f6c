"""The benchmark suite, one module per scenario: ``python -m benchmarks [--quick] [--json F]``.

One module per scenario (``lockstep``, ``pipelined``, ``stream``, ``overhead``,
``scale``, ``throttle``, ``reconnect``, ``capacity``, ``demoapps``, ``coldstart``;
listed in ``__main__.SCENARIOS``), each with ``NAME``, ``TITLE`` and ``async run(env) ->
ScenarioResult`` (and optionally ``TIMEOUT_S = (quick, full)``); ``_scale_worker`` is
the child process of one ``scale`` measurement; ``_harness`` interleaves contenders over
rounds and reports medians, spreads, ratios and targets; ``_servers`` runs the gateway
and a raw aiohttp server in child processes on 127.0.0.1; ``_env`` points fal-client at
them over TLS; ``_rt`` opens a realtime socket the same way for every contender;
``_plot`` draws the chart (``--plot F``). Nothing here is a test: numbers are findings,
judged as ratios in one run.
"""
