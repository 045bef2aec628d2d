// The cockpit's charting library, as a global the cockpit module draws with.
import * as echarts from 'echarts';
window.echarts = echarts;
