"""The route under construction and the moves that change it.

The route is a list of matrix nodes from START to END. Its cost is travel plus service (the
`Instance.cost` matrix), and without binding time windows a route is feasible exactly when that
cost stays within the budget. With windows, departure times and latest feasible arrival times per
position are kept as well, and every move is checked against them before it is applied.

For every node off the route we keep its cheapest insertion (extra cost and the edge to insert
into). A route change only adds a few edges, so most of those entries are updated against the new
edges alone; only nodes whose best edge disappeared are recomputed over the whole route.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from geo.routing.instance import Instance, earliest_start, latest_start
from geo.routing.model import END, START


@dataclass(frozen=True)
class Snapshot:
    route: list[int]
    length: float
    reward: float
    insertion_cost: list[float]
    insertion_edge: list[tuple[int, int]]
    stale: list[bool]
    new_edges: list[tuple[int, int]]


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
        self.insertion_edge = [(START, END)] * size
        self.stale = [True] * size
        self.new_edges: list[tuple[int, int]] = []
        # Nodes whose neighbours changed since the last local search: where it should look first.
        self.touched: set[int] = {START, END}
        self.departure: list[float] = []
        self.latest_arrival: list[float] = []
        self.times_stale = True
        # Gains smaller than float noise are not improvements; looping on them would never end.
        self.epsilon = 1e-9 * max(1.0, instance.budget)

    # --- bookkeeping -------------------------------------------------------------------------

    @property
    def visits(self) -> int:
        return len(self.route) - 2

    def snapshot(self) -> Snapshot:
        return Snapshot(
            self.route[:],
            self.length,
            self.reward,
            self.insertion_cost[:],
            self.insertion_edge[:],
            self.stale[:],
            self.new_edges[:],
        )

    def restore(self, saved: Snapshot) -> None:
        self.route = saved.route[:]
        self.length = saved.length
        self.reward = saved.reward
        self.insertion_cost = saved.insertion_cost[:]
        self.insertion_edge = saved.insertion_edge[:]
        self.stale = saved.stale[:]
        self.new_edges = saved.new_edges[:]
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

    def _added(self, *edges: tuple[int, int]) -> None:
        self.new_edges.extend(edges)
        for a, b in edges:
            self.touched.add(a)
            self.touched.add(b)
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
        self._added((a, node), (node, b))

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
            self.stale[node] = True
            self.reward -= reward[node]
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
        if after >= stop:
            landing = after - (stop - first)
        else:
            landing = after
        del route[first:stop]
        route[landing + 1 : landing + 1] = segment
        low = min(first, landing + 1)
        high = max(stop, landing + 1 + len(segment))
        self._renumber(low, high)
        self.length += delta
        edges = [gap, (route[landing], segment[0]), (segment[-1], route[landing + len(segment) + 1])]
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

    def refresh_insertions(self) -> None:
        """Bring every off-route node's cheapest insertion up to date with the route."""
        inst = self.instance
        cost = inst.cost
        position = self.position
        symmetric = inst.symmetric
        edges = []
        for a, b in set(self.new_edges):
            if position[a] >= 0 and position[b] == position[a] + 1:
                edges.append((a, b, cost[a][b]))
        self.new_edges.clear()
        all_edges: list[tuple[int, int, float]] | None = None
        insertion_cost, insertion_edge, stale = self.insertion_cost, self.insertion_edge, self.stale
        for node in inst.candidates:
            if position[node] >= 0:
                continue
            into, out = inst.cost_into[node], cost[node]
            a, b = insertion_edge[node]
            pa, pb = position[a], position[b]
            present = pa >= 0 and pb >= 0 and (pb == pa + 1 or (symmetric and pa == pb + 1))
            if stale[node] or not present:
                if all_edges is None:
                    route = self.route
                    all_edges = [
                        (route[k], route[k + 1], cost[route[k]][route[k + 1]])
                        for k in range(len(route) - 1)
                    ]
                scan = all_edges
                best = math.inf
                stale[node] = False
            else:
                scan = edges
                best = insertion_cost[node]
            best_edge = insertion_edge[node]
            for a, b, ab in scan:
                extra = into[a] + out[b] - ab
                if extra < best:
                    best = extra
                    best_edge = (a, b)
            insertion_cost[node] = best
            insertion_edge[node] = best_edge

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

    def fill(self, noise: float, greed: float) -> bool:
        """Insert off-route nodes, best reward per extra cost first, while any fits.

        `greed` is the exponent on the reward in that ratio; `noise` is the relative random
        perturbation of each ratio, which lets repeated fills explore different routes.
        """
        inst = self.instance
        reward = inst.reward
        position = self.position
        rng = self.rng
        floor = self.epsilon
        inserted = False
        while self.visits < inst.max_visits:
            self.refresh_insertions()
            slack = inst.budget - self.length
            insertion_cost = self.insertion_cost
            best_score, best_node, best_after = -1.0, -1, -1
            for node in inst.candidates:
                extra = insertion_cost[node]
                if extra > slack or position[node] >= 0:
                    continue
                after = -1
                if inst.timed:
                    extra, after = self.timed_insertion(node, slack)
                    if after < 0:
                        continue
                score = reward[node] ** greed / (extra if extra > floor else floor)
                if noise:
                    score *= 1.0 + noise * rng.random()
                if score > best_score:
                    best_score, best_node, best_after = score, node, after
            if best_node < 0:
                break
            if best_after < 0:
                best_after = position[self.insertion_edge[best_node][0]]
                if self.route[best_after + 1] != self.insertion_edge[best_node][1]:
                    best_after -= 1  # the edge is stored in the other direction
            self.insert(best_node, best_after)
            inserted = True
        return inserted
