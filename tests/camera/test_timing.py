from edgesam_edge.camera.timing import p50_p90_ms, percentile_ms


def test_seconds_become_rounded_milliseconds_and_empty_is_none():
    assert percentile_ms([], 50) is None
    assert percentile_ms([0.0101234], 50) == 10.12
    assert percentile_ms([0.001, 0.002, 0.003, 0.004, 0.1], 50) == 3.0
    assert p50_p90_ms([]) == {"p50": None, "p90": None}
    pair = p50_p90_ms([i / 1000 for i in range(1, 11)])  # 1..10 ms
    assert pair == {"p50": 5.5, "p90": 9.1}
