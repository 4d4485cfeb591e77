"""Improving moves (2-opt, or-opt, exchange) and the perturbation that restarts the descent.

Moves are looked for around the nodes the last changes touched, and only towards each node's
nearest neighbours: a first-improvement descent that costs little per iteration on big routes.
"""

from __future__ import annotations

from geo.routing.search import RouteSearch

MAX_SEGMENT = 3  # or-opt moves chains of up to this many visits


def shorten(search: RouteSearch) -> None:
    """2-opt and or-opt until no move around the touched nodes shortens the route."""
    position = search.position
    pending = sorted(search.touched)
    queued = set(pending)
    search.touched = set()
    while pending:
        node = pending.pop()
        queued.discard(node)
        if position[node] < 0:
            continue
        if _two_opt(search, node) or _or_opt(search, node):
            for other in sorted(search.touched | {node}):
                if other not in queued:
                    queued.add(other)
                    pending.append(other)
            search.touched = set()
            position = search.position


def shorten_all(search: RouteSearch) -> None:
    search.touched = set(search.route)
    shorten(search)


def _reversal_extra(search: RouteSearch, first: int, last: int) -> float:
    """How much longer positions first..last get when walked backwards (0 when symmetric)."""
    if search.instance.symmetric:
        return 0.0
    cost, route = search.instance.cost, search.route
    return sum(
        cost[route[k + 1]][route[k]] - cost[route[k]][route[k + 1]] for k in range(first, last)
    )


def _two_opt(search: RouteSearch, node: int) -> bool:
    inst = search.instance
    cost, route, position = inst.cost, search.route, search.position
    last = len(route) - 1
    i = position[node]
    for other in inst.near[node]:
        j = position[other]
        if j < 0 or abs(i - j) < 2:
            continue
        # Two ways to make `node`-`other` an edge: through their successors or predecessors.
        for first, stop in ((min(i, j) + 1, max(i, j)), (min(i, j), max(i, j) - 1)):
            if first < 1 or stop > last - 1 or first >= stop:
                continue
            before, head, tail, after = route[first - 1], route[first], route[stop], route[stop + 1]
            gain = cost[before][head] + cost[tail][after] - cost[before][tail] - cost[head][after]
            gain -= _reversal_extra(search, first, stop)
            if gain <= search.epsilon:
                continue
            if inst.timed and not search.fits_in_time(
                first - 1, route[stop : first - 1 : -1], stop + 1
            ):
                continue
            search.reverse(first, stop, -gain)
            return True
    return False


def _or_opt(search: RouteSearch, node: int) -> bool:
    inst = search.instance
    cost, route, position, near = inst.cost, search.route, search.position, inst.near
    last = len(route) - 1
    i = position[node]
    for length in range(1, MAX_SEGMENT + 1):
        for first in {i, i - length + 1}:
            stop = first + length
            if first < 1 or stop > last:
                continue
            head, tail = route[first], route[stop - 1]
            before, after = route[first - 1], route[stop]
            removal = cost[before][head] + cost[tail][after] - cost[before][after]
            if removal <= search.epsilon:
                continue
            flip_extra = _reversal_extra(search, first, stop - 1)
            # Land `head` or `tail` next to one of its neighbours, in the orientation that makes
            # the new edge the short one.
            for end_node, neighbours in ((head, near[head]), (tail, near[tail])):
                for other in neighbours:
                    j = position[other]
                    if j < 0 or first <= j < stop:
                        continue
                    for landing, flip in _landings(end_node is head, j):
                        if not (0 <= landing < last) or first - 1 <= landing < stop:
                            continue
                        u, w = route[landing], route[landing + 1]
                        if flip:
                            insertion = cost[u][tail] + cost[head][w] - cost[u][w] + flip_extra
                        else:
                            insertion = cost[u][head] + cost[tail][w] - cost[u][w]
                        gain = removal - insertion
                        if gain <= search.epsilon:
                            continue
                        if inst.timed and not _move_fits(search, first, stop, landing, flip):
                            continue
                        search.move(first, stop, landing, flip, -gain)
                        return True
    return False


def _landings(at_head: bool, j: int) -> tuple[tuple[int, bool], tuple[int, bool]]:
    # (position to insert after, reversed?) so that the segment end touches position j.
    if at_head:  # other -> head ... tail, or tail ... head -> other
        return ((j, False), (j - 1, True))
    return ((j - 1, False), (j, True))  # head ... tail -> other, or other -> tail ... head


def _move_fits(search: RouteSearch, first: int, stop: int, landing: int, flip: bool) -> bool:
    route = search.route
    segment = route[first:stop]
    if flip:
        segment.reverse()
    if landing >= stop:
        return search.fits_in_time(first - 1, route[stop : landing + 1] + segment, landing + 1)
    return search.fits_in_time(landing, segment + route[landing + 1 : first], stop)


def exchange(search: RouteSearch) -> bool:
    """Swap one visit for an off-route node worth more (or as much, for a shorter route)."""
    inst = search.instance
    search.refresh_insertions()
    cost, reward, route, position = inst.cost, inst.reward, search.route, search.position
    slack = inst.budget - search.length
    removal = [0.0] * len(route)
    for k in range(1, len(route) - 1):
        before, node, after = route[k - 1], route[k], route[k + 1]
        removal[k] = cost[before][node] + cost[node][after] - cost[before][after]
    by_saving = sorted(range(1, len(route) - 1), key=lambda k: -removal[k])
    lowest = min((reward[route[k]] for k in range(1, len(route) - 1)), default=0.0)
    best_key = (0.0, search.epsilon)
    best_move: tuple[int, int, int] | None = None  # (node in, position out, insert after)
    for node in inst.candidates:
        if position[node] >= 0 or reward[node] < lowest:
            continue
        gain_limit = reward[node]
        # In place of a visit next to it...
        for other in inst.near[node]:
            k = position[other]
            if not 1 <= k < len(route) - 1 or reward[other] > gain_limit:
                continue
            before, after = route[k - 1], route[k + 1]
            change = cost[before][node] + cost[node][after] - cost[before][after] - removal[k]
            key = (reward[node] - reward[other], -change)
            if change <= slack and key > best_key and _exchange_fits(search, node, k, k - 1):
                best_key, best_move = key, (node, k, k - 1)
        # ... or at its own cheapest place, dropping the visit whose removal saves the most.
        a, b = search.insertion_edge[node]
        needed = search.insertion_cost[node] - slack
        for k in by_saving:
            if removal[k] < needed:
                break
            out = route[k]
            if out in (a, b) or reward[out] > gain_limit:
                continue
            change = search.insertion_cost[node] - removal[k]
            key = (reward[node] - reward[out], -change)
            if key <= best_key:
                continue
            after = position[a] if route[position[a] + 1] == b else position[b]
            if _exchange_fits(search, node, k, after):
                best_key, best_move = key, (node, k, after)
    if best_move is None:
        return False
    node, k, after = best_move
    search.remove(k, k + 1)
    search.insert(node, after if after < k else after - 1)
    return True


def _exchange_fits(search: RouteSearch, node: int, out: int, after: int) -> bool:
    if not search.instance.timed:
        return True
    route = search.route
    if after == out - 1:
        return search.fits_in_time(out - 1, [node], out + 1)
    trial = route[1:-1]
    trial.insert(after, node)  # route position after + 1 is index after among the visits
    trial.remove(route[out])
    return search.fits_in_time(0, trial, len(route) - 1)


def perturb(search: RouteSearch, strength: int) -> list[int]:
    """Drop a few visits: a stretch of the route, or a visit and its nearest companions."""
    rng = search.rng
    visits = search.visits
    if visits == 0:
        return []
    count = rng.randint(1, max(1, min(strength, visits)))
    if rng.random() < 0.5:
        first = rng.randint(1, visits - count + 1)
        return search.remove(first, first + count)
    centre = search.route[rng.randint(1, visits)]
    dropped = [centre]
    for other in search.instance.near[centre]:
        if len(dropped) >= count:
            break
        if search.position[other] >= 1 and search.position[other] < len(search.route) - 1:
            dropped.append(other)
    for node in dropped:
        k = search.position[node]
        search.remove(k, k + 1)
    return dropped
