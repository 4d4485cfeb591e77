"""Recurring schedules: which periods a campaign has in a store's time zone.

A schedule (``schedule.parse_schedule``) is an RRULE subset or a list of local dates, each with
a local start time and a window; ``periods`` turns it into UTC periods for one IANA zone.
Pure: no web framework, database or clock; every expansion is bounded by explicit caps.
"""
