"""Rule sets the integration tests upload."""

BASIC = """\
version: 1
timezone: Europe/London
points_expire_after: P12M
rules:
  - id: course_completed
    event: lms.course_completed
    points: 30
  - id: deal_closed
    event: crm.deal_closed
    when: 'event.attributes.amount >= 1000'
    points: 50
    cap: {per: day, max: 2}
  - id: peer_kudos
    event: slack.kudos
    points: 'event.attributes.points'
    peer:
      allow_self: false
      allowance: {per: week, max: 50}
"""
