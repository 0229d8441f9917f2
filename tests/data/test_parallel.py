from __future__ import annotations

from ptwiki_llm.data.parallel import ordered_map, resolve_workers


def square(x: int) -> int:
    return x * x


def test_parallel_results_match_serial_order():
    items = list(range(500))
    assert list(ordered_map(square, items, workers=2, batch_size=7)) == [x * x for x in items]


def test_input_is_consumed_lazily():
    consumed = []

    def source():
        for i in range(10_000):
            consumed.append(i)
            yield i

    results = ordered_map(square, source(), workers=2, batch_size=10, max_in_flight=4)
    first = next(results)
    assert first == 0
    # a bounded window: far less than the whole input has been read
    assert len(consumed) <= 10 * 5
    results.close()


def test_resolve_workers():
    assert resolve_workers(3) == 3
    assert resolve_workers(0) >= 1
