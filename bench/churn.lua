-- Connection churn for sysbench 1.0: every event connects, runs SELECT 1 and quits, so the
-- rate is logins per second and the latency is that of a whole connect/query/quit.
-- sysbench bench/churn.lua --mysql-host=... --mysql-port=... --threads=N --time=S run

function thread_init()
  drv = sysbench.sql.driver()
end

function event()
  local con = drv:connect()
  con:query("SELECT 1")
  con:disconnect()
end
