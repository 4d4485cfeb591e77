"""Moves: greedy fill, improving moves (2-opt, or-opt, exchange) and the perturbation.

Moves are looked for around the nodes the last changes touched, and only towards each node's
nearest neighbours: a first-improvement descent that costs little per iteration on big routes.
"""

from __future__ import annotations

import heapq

from geo.routing.search import RouteSearch

MAX_SEGMENT = 3  # or-opt moves chains of up to this many visits


def fill(search: RouteSearch, noise: float, banned: frozenset[int] = frozenset()) -> bool:
    """Insert off-route nodes, best reward per extra cost first, while any fits.

    `noise` is the relative random spread of each ratio, which lets repeated fills explore
    different routes; `banned` nodes stay out (the ones a perturbation just dropped).
    """
    inst = search.instance
    reward, position = inst.reward, search.position
    insertion_cost = search.insertion_cost
    rng = search.rng
    floor = search.epsilon
    budget = inst.budget
    timed = inst.timed
    score: dict[int, float] = {}
    # With windows the cached cost is a lower bound; the exact one is found on demand and
    # trusted until the next insertion.
    exact: dict[int, tuple[float, int]] = {}

    def rate(node: int, extra: float) -> float:
        ratio = reward[node] / (extra if extra > floor else floor)
        return ratio * (1.0 + noise * rng.random()) if noise else ratio

    search.refresh_insertions()
    slack = budget - search.length
    heap = []
    for node in inst.candidates:
        extra = insertion_cost[node]
        if position[node] < 0 and extra <= slack and node not in banned:
            score[node] = rate(node, extra)
            heap.append((-score[node], node))
    heapq.heapify(heap)
    inserted = False
    while heap and search.visits < inst.max_visits:
        negative, node = heapq.heappop(heap)
        if position[node] >= 0 or score.get(node) != -negative:
            continue
        if node in search.far and not search.insertion_is_current(node):
            search.place(node)
            if insertion_cost[node] <= slack:
                score[node] = rate(node, insertion_cost[node])
                heapq.heappush(heap, (-score[node], node))
            continue
        extra = insertion_cost[node]
        if extra > slack:
            continue
        if timed:
            if node not in exact:
                exact[node] = search.timed_insertion(node, slack)
                timed_extra, after = exact[node]
                if after < 0:
                    del score[node]
                    continue
                if timed_extra > extra:
                    score[node] = rate(node, timed_extra)
                    heapq.heappush(heap, (-score[node], node))
                    continue
            search.insert(node, exact[node][1])
            exact.clear()
        else:
            search.insert_where_cached(node)
        inserted = True
        slack = budget - search.length
        for other in search.refresh_insertions():
            extra = insertion_cost[other]
            if extra <= slack and other not in banned:
                score[other] = rate(other, extra)
                heapq.heappush(heap, (-score[other], other))
    return inserted


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
    row = cost[node]
    # An improving 2-opt move makes at least one new edge shorter than the old edge it replaces
    # at the same node, so scanning nearest neighbours can stop past both old edges' lengths.
    to_next = row[route[i + 1]] if i < last else -1.0
    to_previous = cost[route[i - 1]][node] if i > 0 else -1.0
    for other in inst.near[node]:
        link = row[other]
        if link >= to_next and link >= to_previous:
            break
        j = position[other]
        if j < 0 or abs(i - j) < 2:
            continue
        # Two ways to make `node`-`other` an edge: through their successors or predecessors.
        low, high = (i, j) if i < j else (j, i)
        for first, stop, bound in ((low + 1, high, to_next), (low, high - 1, to_previous)):
            if link >= bound or first < 1 or stop > last - 1 or first >= stop:
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
        for first in (i, i - length + 1) if length > 1 else (i,):
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
            # the new edge the short one; a neighbour farther than the saving cannot pay off.
            for end_node in (head, tail) if length > 1 else (head,):
                row = cost[end_node]
                for other in near[end_node]:
                    if row[other] >= removal:
                        break
                    j = position[other]
                    if j < 0 or first <= j < stop:
                        continue
                    for landing, flip in ((j, end_node is tail), (j - 1, end_node is head)):
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
    insertion_cost, insertion_edge = search.insertion_cost, search.insertion_edge
    slack = inst.budget - search.length
    last = len(route) - 1
    removal = [0.0] * len(route)
    for k in range(1, last):
        before, node, after = route[k - 1], route[k], route[k + 1]
        removal[k] = cost[before][node] + cost[node][after] - cost[before][after]
    by_saving = sorted(range(1, last), key=removal.__getitem__, reverse=True)
    most_saved = removal[by_saving[0]] if by_saving else 0.0
    lowest = min((reward[route[k]] for k in range(1, last)), default=0.0)
    best_key = (0.0, search.epsilon)
    best_move: tuple[int, int, int] | None = None  # (node in, position out, insert after)
    far = search.far
    for node in inst.candidates:
        if position[node] >= 0 or reward[node] < lowest:
            continue
        if node in far and not search.insertion_is_current(node):
            if insertion_cost[node] - slack > most_saved:
                continue
            search.place(node)
        gain_limit = reward[node]
        a, b = insertion_edge[node]
        # In place of a visit next to it...
        for other in (a, b, *inst.near[node]):
            k = position[other]
            if not 1 <= k < last or reward[other] > gain_limit:
                continue
            before, after = route[k - 1], route[k + 1]
            change = cost[before][node] + cost[node][after] - cost[before][after] - removal[k]
            key = (reward[node] - reward[other], -change)
            if change <= slack and key > best_key and _exchange_fits(search, node, k, k - 1):
                best_key, best_move = key, (node, k, k - 1)
        # ... or at its own cheapest place, dropping the visit whose removal saves the most.
        needed = insertion_cost[node] - slack
        for k in by_saving:
            if removal[k] < needed:
                break
            out = route[k]
            if out in (a, b) or reward[out] > gain_limit:
                continue
            change = insertion_cost[node] - removal[k]
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
