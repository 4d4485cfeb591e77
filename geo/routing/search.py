"""The route under construction, the changes that make it, and where off-route nodes would go.

The route is a list of matrix nodes from START to END. Its cost is travel plus service (the
`Instance.cost` matrix), and without binding time windows a route is feasible exactly when that
cost stays within the budget. With windows, departure times and latest feasible arrival times per
position are kept as well, and every move is checked against them before it is applied.

Every node off the route carries its cheapest known insertion: the extra cost and the edge to
insert into, an edge next to one of the node's nearest neighbours. A route change touches a few
nodes; only the nodes that count one of those among their nearest neighbours are looked at again,
which keeps the update cost independent of the instance size.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from geo.routing.instance import Instance, earliest_start, latest_start
from geo.routing.model import END, START

Edge = tuple[int, int]


@dataclass(frozen=True)
class Snapshot:
    route: list[int]
    length: float
    reward: float
    insertion_cost: list[float]
    insertion_edge: list[Edge]
    far: frozenset[int]


class RouteSearch:
    def __init__(self, instance: Instance, rng: random.Random) -> None:
        self.instance = instance
        self.rng = rng
        size = instance.size
        self.route: list[int] = [START, END]
        self.position = [-1] * size
        self.position[START] = 0
        self.position[END] = 1
        self.length = instance.cost[START][END]
        self.reward = 0.0
        self.insertion_cost = [math.inf] * size
        self.insertion_edge: list[Edge] = [(START, END)] * size
        # Off-route nodes none of whose nearest neighbours is on the route: their entry came from
        # a scan of the whole route, and whether its edge still exists is checked where it is used.
        self.far: set[int] = set()
        self.added: list[Edge] = []
        self.dirty: set[int] = set()  # nodes whose neighbours on the route changed
        self.dropped: set[int] = set(instance.candidates)  # off the route since the last update
        # Nodes whose neighbours changed since the last local search: where it should look first.
        self.touched: set[int] = {START, END}
        self.departure: list[float] = []
        self.latest_arrival: list[float] = []
        self.times_stale = True
        # Gains smaller than float noise are not improvements; looping on them would never end.
        self.epsilon = 1e-9 * max(1.0, instance.budget)
        self.refresh_insertions()

    # --- bookkeeping -------------------------------------------------------------------------

    @property
    def visits(self) -> int:
        return len(self.route) - 2

    def snapshot(self) -> Snapshot:
        self.refresh_insertions()
        return Snapshot(
            self.route[:],
            self.length,
            self.reward,
            self.insertion_cost[:],
            self.insertion_edge[:],
            frozenset(self.far),
        )

    def restore(self, saved: Snapshot) -> None:
        self.route = saved.route[:]
        self.length = saved.length
        self.reward = saved.reward
        self.insertion_cost = saved.insertion_cost[:]
        self.insertion_edge = saved.insertion_edge[:]
        self.far = set(saved.far)
        self.added = []
        self.dirty = set()
        self.dropped = set()
        position = [-1] * self.instance.size
        for index, node in enumerate(self.route):
            position[node] = index
        self.position = position
        self.touched = set()
        self.times_stale = True

    def exact_length(self) -> float:
        cost = self.instance.cost
        route = self.route
        return sum(cost[route[k]][route[k + 1]] for k in range(len(route) - 1))

    def _renumber(self, first: int, last: int) -> None:
        route, position = self.route, self.position
        for index in range(first, last):
            position[route[index]] = index

    def _added(self, *edges: Edge) -> None:
        self.added.extend(edges)
        for a, b in edges:
            self.touched.add(a)
            self.touched.add(b)
            self.dirty.add(a)
            self.dirty.add(b)
        self.times_stale = True

    # --- elementary changes ------------------------------------------------------------------

    def insert(self, node: int, after: int) -> None:
        """Insert `node` between positions `after` and `after + 1`."""
        route = self.route
        cost = self.instance.cost
        a, b = route[after], route[after + 1]
        self.length += cost[a][node] + cost[node][b] - cost[a][b]
        self.reward += self.instance.reward[node]
        route.insert(after + 1, node)
        self._renumber(after + 1, len(route))
        self.insertion_cost[node] = math.inf
        self.far.discard(node)
        self._added((a, node), (node, b))

    def insert_where_cached(self, node: int) -> None:
        if not self.insertion_is_current(node):
            self.place(node)
        a, b = self.insertion_edge[node]
        after = self.position[a]
        if self.route[after + 1] != b:
            after = self.position[b]  # a symmetric edge walked the other way since
        self.insert(node, after)

    def remove(self, first: int, stop: int) -> list[int]:
        """Remove the visits at positions first..stop-1."""
        route = self.route
        cost = self.instance.cost
        reward = self.instance.reward
        a, b = route[first - 1], route[stop]
        dropped = route[first:stop]
        segment = sum(cost[route[k]][route[k + 1]] for k in range(first - 1, stop))
        self.length += cost[a][b] - segment
        del route[first:stop]
        for node in dropped:
            self.position[node] = -1
            self.reward -= reward[node]
        self.dropped.update(dropped)
        self.dirty.update(dropped)
        self._renumber(first, len(route))
        self._added((a, b))
        return dropped

    def reverse(self, first: int, last: int, delta: float) -> None:
        """Reverse the visits at positions first..last; `delta` is the change in length."""
        route = self.route
        route[first : last + 1] = route[first : last + 1][::-1]
        self._renumber(first, last + 1)
        self.length += delta
        if self.instance.symmetric:
            self._added((route[first - 1], route[first]), (route[last], route[last + 1]))
        else:
            self._added(*((route[k], route[k + 1]) for k in range(first - 1, last + 1)))

    def move(self, first: int, stop: int, after: int, flip: bool, delta: float) -> None:
        """Move positions first..stop-1 between `after` and `after + 1` (old positions)."""
        route = self.route
        segment = route[first:stop]
        if flip:
            segment.reverse()
        gap = (route[first - 1], route[stop])
        landing = after - (stop - first) if after >= stop else after
        del route[first:stop]
        route[landing + 1 : landing + 1] = segment
        low = min(first, landing + 1)
        high = max(stop, landing + 1 + len(segment))
        self._renumber(low, high)
        self.length += delta
        edges = [
            gap,
            (route[landing], segment[0]),
            (segment[-1], route[landing + len(segment) + 1]),
        ]
        if flip and not self.instance.symmetric:
            edges.extend((segment[k], segment[k + 1]) for k in range(len(segment) - 1))
        self._added(*edges)

    # --- timing (only with time windows) -----------------------------------------------------

    def retime(self) -> None:
        if not self.times_stale:
            return
        inst = self.instance
        travel, service, windows = inst.travel, inst.service, inst.windows
        route = self.route
        count = len(route)
        departure = [0.0] * count
        clock = 0.0
        for k in range(1, count):
            node = route[k]
            clock += travel[route[k - 1]][node]
            node_windows = windows[node]
            if node_windows is not None:
                clock = earliest_start(node_windows, clock)
            clock += service[node]
            departure[k] = clock
        latest = [0.0] * count
        latest[-1] = inst.budget
        for k in range(count - 2, 0, -1):
            node = route[k]
            start = latest[k + 1] - travel[node][route[k + 1]] - service[node]
            node_windows = windows[node]
            if node_windows is not None:
                start = latest_start(node_windows, start)
            latest[k] = start
        self.departure = departure
        self.latest_arrival = latest
        self.times_stale = False

    def fits_in_time(self, before: int, nodes: list[int], after: int) -> bool:
        """Whether the route stays feasible with `nodes` between positions `before` and `after`."""
        inst = self.instance
        travel, service, windows = inst.travel, inst.service, inst.windows
        self.retime()
        clock = self.departure[before]
        here = self.route[before]
        for node in nodes:
            clock += travel[here][node]
            node_windows = windows[node]
            if node_windows is not None:
                clock = earliest_start(node_windows, clock)
            clock += service[node]
            here = node
        return clock + travel[here][self.route[after]] <= self.latest_arrival[after]

    # --- insertion ---------------------------------------------------------------------------

    def refresh_insertions(self) -> list[int]:
        """Bring off-route nodes' insertions up to date; returns the nodes whose entry changed.

        Far nodes are left alone unless a nearest neighbour of theirs joined the route: their
        entry may then point at a vanished edge, which `insertion_is_current` tells.
        """
        inst = self.instance
        cost, near_of = inst.cost, inst.near_of
        position = self.position
        added_at: dict[int, list[tuple[int, int, float]]] = {}
        for a, b in dict.fromkeys(self.added):
            if position[a] >= 0 and position[b] == position[a] + 1:
                edge = (a, b, cost[a][b])
                added_at.setdefault(a, []).append(edge)
                added_at.setdefault(b, []).append(edge)
        self.added = []
        # Which off-route nodes to look at, with the new edges that may now suit them.
        work: dict[int, list[tuple[int, int, float]]] = {}
        dropped, far = self.dropped, self.far
        for node in dropped:
            if position[node] < 0:
                work[node] = []
        for touched in self.dirty:
            edges = added_at.get(touched, [])
            for node in near_of[touched]:
                if position[node] < 0:
                    work[node] = work[node] + edges if node in work else edges
        self.dropped = set()
        self.dirty = set()

        insertion_cost, insertion_edge = self.insertion_cost, self.insertion_edge
        changed = []
        for node, edges in work.items():
            old = insertion_cost[node]
            if node in dropped or node in far or not self.insertion_is_current(node):
                self.place(node)
            else:
                into, out = inst.cost_into[node], cost[node]
                best = old
                for a, b, ab in edges:
                    extra = into[a] + out[b] - ab
                    if extra < best:
                        best = extra
                        insertion_edge[node] = (a, b)
                insertion_cost[node] = best
            if insertion_cost[node] != old:
                changed.append(node)
        return changed

    def insertion_is_current(self, node: int) -> bool:
        a, b = self.insertion_edge[node]
        position = self.position
        pa, pb = position[a], position[b]
        if pa < 0 or pb < 0:
            return False
        return pb == pa + 1 or (self.instance.symmetric and pa == pb + 1)

    def place(self, node: int) -> None:
        """Find the node's cheapest insertion next to its nearest neighbours on the route."""
        inst = self.instance
        cost, into, out = inst.cost, inst.cost_into[node], inst.cost[node]
        route, position = self.route, self.position
        last = len(route) - 1
        best = math.inf
        best_edge = (START, END)
        scanned = False
        for other in inst.near[node]:
            k = position[other]
            if k < 0:
                continue
            scanned = True
            if k < last:
                b = route[k + 1]
                extra = into[other] + out[b] - cost[other][b]
                if extra < best:
                    best, best_edge = extra, (other, b)
            if k > 0:
                a = route[k - 1]
                extra = into[a] + out[other] - cost[a][other]
                if extra < best:
                    best, best_edge = extra, (a, other)
        if scanned:
            self.far.discard(node)
        else:
            self.far.add(node)
            for k in range(last):
                a, b = route[k], route[k + 1]
                extra = into[a] + out[b] - cost[a][b]
                if extra < best:
                    best, best_edge = extra, (a, b)
        self.insertion_cost[node] = best
        self.insertion_edge[node] = best_edge

    def timed_insertion(self, node: int, slack: float) -> tuple[float, int]:
        """Cheapest insertion of `node` that keeps every window: (extra cost, position before)."""
        inst = self.instance
        cost, travel = inst.cost, inst.travel
        into, out = inst.cost_into[node], cost[node]
        node_windows = inst.windows[node]
        service = inst.service[node]
        self.retime()
        departure, latest = self.departure, self.latest_arrival
        route = self.route
        best, best_after = math.inf, -1
        for k in range(len(route) - 1):
            a, b = route[k], route[k + 1]
            extra = into[a] + out[b] - cost[a][b]
            if extra > slack or extra >= best:
                continue
            start = departure[k] + travel[a][node]
            if node_windows is not None:
                start = earliest_start(node_windows, start)
            if start + service + travel[node][b] <= latest[k + 1]:
                best, best_after = extra, k
        return best, best_after
