-- One row per (enrollment_id, enrolled_email, lms): the manual enrollment transitions, in time
-- order (ties by id). The joined lists keep one item per transition (NULL as an empty item),
-- so their positions line up; first/last ignore transitions without a time stamp.
SELECT
  enrollment_id,
  count(id) AS count_of_transitions,
  enrolled_email,
  lms,
  element_at(
    array_agg(state_transition ORDER BY time_stamp DESC, id DESC) FILTER (WHERE time_stamp IS NOT NULL), 1
  ) AS last_state_transition,
  max(time_stamp) AS last_time_stamp,
  min(time_stamp) AS first_time_stamp,
  element_at(
    array_agg(reason ORDER BY time_stamp, id) FILTER (WHERE time_stamp IS NOT NULL), 1
  ) AS first_reason,
  array_join(array_agg(coalesce(state_transition, '') ORDER BY time_stamp, id), ',') AS state_transitions,
  array_join(array_agg(coalesce(reason, '') ORDER BY time_stamp, id), ',') AS reasons,
  array_join(
    array_agg(coalesce(CAST(enrolled_by_id AS VARCHAR), '') ORDER BY time_stamp, id), ','
  ) AS enrolled_by_ids,
  array_join(
    array_agg(coalesce(date_format(time_stamp, '%Y-%m-%d %H:%i:%s.%f'), '') ORDER BY time_stamp, id), ','
  ) AS transitions_time_stamps
FROM {student_manualenrollmentaudit}
GROUP BY enrollment_id, enrolled_email, lms
