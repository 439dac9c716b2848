"""`fasttcp analyze --report report.html`: one self-contained HTML page about a capture
(summary, connection states and end reasons, handshake RTT distributions, traffic
over time, top talkers and ports, the slowest handshakes), aggregated as the rows
stream so that memory stays bounded whatever the capture's size. See docs/report.md."""
from fasttcp.report.aggregate import ReportAggregate
from fasttcp.report.write import write_report

__all__ = ["ReportAggregate", "write_report"]
