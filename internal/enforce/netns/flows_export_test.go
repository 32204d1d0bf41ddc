package netns

// StopFlowLogs lets tests turn flow logs off without closing the driver,
// to count what flow logging alone leaves behind.
var StopFlowLogs = (*Driver).stopFlowLogs
