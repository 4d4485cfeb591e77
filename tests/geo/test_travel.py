"""Travel models: geodesic times per mode, and precomputed matrices served by point."""

from __future__ import annotations

import pytest

from geo.distance import geodesic_m
from geo.travel import GeodesicTravelModel, MatrixTravelModel

# Three points in central Paris: Hôtel de Ville, Châtelet, Bastille.
HOTEL_DE_VILLE = (48.85641, 2.35222)
CHATELET = (48.85837, 2.34700)
BASTILLE = (48.85321, 2.36912)
POINTS = [HOTEL_DE_VILLE, CHATELET, BASTILLE]


def test_walking_time_is_stretched_geodesic_at_five_kmh() -> None:
    matrices = GeodesicTravelModel("walk").matrices(POINTS)
    crow_flies = geodesic_m(*HOTEL_DE_VILLE, *BASTILLE)
    assert matrices.metres[0][2] == pytest.approx(crow_flies * 1.3)
    assert matrices.seconds[0][2] == pytest.approx(crow_flies * 1.3 / (5 / 3.6))
    assert 1_200 < matrices.metres[0][2] < 1_800  # about 1.3 km on foot


def test_matrices_are_square_symmetric_with_a_zero_diagonal() -> None:
    matrices = GeodesicTravelModel("bike").matrices(POINTS)
    for matrix in (matrices.seconds, matrices.metres):
        assert len(matrix) == 3
        assert all(len(row) == 3 for row in matrix)
        assert all(matrix[i][i] == 0 for i in range(3))
        assert all(matrix[i][j] == matrix[j][i] for i in range(3) for j in range(3))


def test_faster_modes_take_proportionally_less_time() -> None:
    walk = GeodesicTravelModel("walk").matrices(POINTS).seconds[0][1]
    run = GeodesicTravelModel("run").matrices(POINTS).seconds[0][1]
    bike = GeodesicTravelModel("bike").matrices(POINTS).seconds[0][1]
    assert run == pytest.approx(walk / 2)
    assert bike == pytest.approx(walk / 3)


def test_speed_detour_and_mode_table_can_be_set() -> None:
    explicit = GeodesicTravelModel("walk", speed_kmh=3.6, detour_factor=1.0)
    metres = geodesic_m(*HOTEL_DE_VILLE, *CHATELET)
    assert explicit.matrices(POINTS).seconds[0][1] == pytest.approx(metres)  # 1 m/s
    scooter = GeodesicTravelModel("scooter", speeds_kmh={"scooter": 18.0})
    assert scooter.resolved_speed_kmh == 18.0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"mode": "teleport"}, "unknown travel mode"),
        ({"mode": "walk", "speed_kmh": 0.0}, "speed must be positive"),
        ({"mode": "walk", "detour_factor": 0.9}, "detour factor"),
    ],
)
def test_bad_settings_are_refused(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeodesicTravelModel(**arguments)  # type: ignore[arg-type]


def test_a_matrix_model_serves_any_subset_in_the_requested_order() -> None:
    seconds = [[0, 10, 20], [11, 0, 30], [21, 31, 0]]
    metres = [[0, 100, 200], [110, 0, 300], [210, 310, 0]]
    model = MatrixTravelModel(POINTS, seconds, metres)
    served = model.matrices([BASTILLE, HOTEL_DE_VILLE, BASTILLE])
    assert served.seconds == ((0, 21, 0), (20, 0, 20), (0, 21, 0))
    assert served.metres == ((0, 210, 0), (200, 0, 200), (0, 210, 0))


def test_a_matrix_model_refuses_unknown_points_and_bad_shapes() -> None:
    model = MatrixTravelModel(POINTS[:2], [[0, 1], [1, 0]], [[0, 5], [5, 0]])
    with pytest.raises(ValueError, match="not in the travel matrix"):
        model.matrices([BASTILLE])
    with pytest.raises(ValueError, match="2x2"):
        MatrixTravelModel(POINTS[:2], [[0, 1]], [[0, 5], [5, 0]])
